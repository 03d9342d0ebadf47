//! Inputs found by the `device_poll` fuzz target, kept as regression tests.

use zepto_kernel::client::Client;
use zepto_kernel::heap::HeapOps;
use zepto_kernel::nonce_store::NonceStore;
use zepto_kernel::plugins::{Bodypart, Echo, Ping};
use zepto_kernel::pump::{self, Device, DeviceConfig};
use zepto_kernel::sasp::{DefaultCipher, Role, Sasp};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::{VmConfig, VmMedium};
use zepto_kernel::Heap;

const KEY: [u8; 16] = [7; 16];

/// Same steps as `fuzz/fuzz_targets/device_poll.rs`.
fn run(data: &[u8]) {
    let (&mode, body) = data.split_first().unwrap();
    let cfg = DeviceConfig::default();
    let mut dhal = TestHal::<256>::new(1);
    pump::provision(&mut dhal, &cfg).unwrap();
    let (mut ping, mut echo) = (Ping, Echo);
    let mut table = [Bodypart::new(1, &mut ping), Bodypart::new(2, &mut echo)];
    let mut dev = Device::<VmMedium<4, 16, 2>, DefaultCipher, 512, 8>::new(
        &KEY,
        VmMedium::new(VmConfig::default()),
        &mut table,
        cfg,
        &mut dhal,
    )
    .unwrap();
    let packet = if mode & 1 == 0 {
        body.to_vec()
    } else {
        let mut h = TestHal::<64>::new(2);
        NonceStore::provision(&mut h, 0, 1000, 0).unwrap();
        let nonces = NonceStore::open(&mut h, 0, 16).unwrap();
        let mut s = Sasp::<DefaultCipher>::new(&KEY, Role::Client, nonces).unwrap();
        let mut heap = Heap::<1024, 2>::new();
        let hd = heap.alloc().unwrap();
        heap.set_request(hd, body).unwrap();
        s.send(&mut heap, hd, &mut h).unwrap();
        heap.reply(hd).unwrap().to_vec()
    };
    dhal.push_rx(&packet).unwrap();
    for _ in 0..4 {
        dev.poll(&mut dhal);
        dhal.now_ms += 10_000;
    }
    while dhal.pop_tx().is_some() {}
    let mut chal = TestHal::<256>::new(3);
    NonceStore::provision(&mut chal, 0, 5000, 0).unwrap();
    let mut client = Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, 0, 16).unwrap();
    let pkt = client
        .send_program(&mut chal, &[0x02, 0x02, 0x00])
        .unwrap()
        .to_vec();
    dhal.push_rx(&pkt).unwrap();
    dev.poll(&mut dhal);
    eprintln!("{:?}", dev.events());
    assert!(dhal.pop_tx().is_some(), "the device stopped answering");
}

/// A program whose reply outgrew the heap while being sent left the heap full, so
/// the device could not even receive the next command.
#[test]
fn reply_too_big_for_the_heap_does_not_wedge_the_device() {
    run(&[
        0x0d, 0x01, 0x00, 0x55, 0x20, 0x00, 0x00, 0x55, 0x0a, 0x00, 0x04, 0x0d, 0x01, 0x0d, 0x03,
        0x01, 0x0d, 0x03, 0x01, 0x01, 0x23, 0xff, 0x01, 0x26, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03,
        0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x0a, 0x15,
        0x26, 0x02, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
        0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
        0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x2f, 0x00,
    ]);
}
