//! The `device_poll` fuzz harness, shared by the fuzz target
//! (`fuzz/fuzz_targets/device_poll.rs`) and the regression tests that replay what it
//! found (`zepto-kernel/tests/fuzz_regressions.rs`).
//!
//! Arbitrary packets go into a whole device (`Device::poll`): SASP rejects nearly all
//! of them, so inputs with an odd first byte are first encrypted with the device's
//! key, which lets SAGDP, SACCP and the VM see arbitrary programs and headers too.
//! Nothing may panic, and the pump keeps serving a well-formed command afterwards.

use zepto_kernel::client::{Client, ClientConfig};
use zepto_kernel::nonce_store::{BlankStart, NonceStore};
use zepto_kernel::plugins::{Bodypart, Echo, Ping};
use zepto_kernel::pump::{self, Device, DeviceConfig};
use zepto_kernel::sasp::{DefaultCipher, Role, Sasp};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::{VmConfig, VmMedium};
use zepto_kernel::HeapMem;

const KEY: [u8; 16] = [7; 16];

/// Runs one input; panics if the device stops answering a well-formed command.
pub fn device_poll(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let cfg = DeviceConfig::default();
    let mut dhal = TestHal::<256>::new(1);
    pump::provision_new_key::<DefaultCipher, _>(&mut dhal, &cfg, &KEY).unwrap();
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
    let packet = if mode & 1 == 0 || body.is_empty() || body[0] >= 0x80 {
        body.to_vec()
    } else {
        // An authentic SASP packet carrying the fuzzer's bytes as SAGDP packet.
        let mut h = TestHal::<64>::new(2);
        let nonces = NonceStore::open(&mut h, 0, 16, [0; 4], BlankStart::Floor(1000)).unwrap();
        let mut s = Sasp::<DefaultCipher>::new(&KEY, Role::Client, nonces).unwrap();
        let mut heap_mem = HeapMem::<1024, 2>::new();
        let mut heap = heap_mem.heap();
        let hd = heap.alloc().unwrap();
        if heap.set_request(hd, body).is_err() || s.send(&mut heap, hd, &mut h).is_err() {
            return;
        }
        heap.reply(hd).unwrap().to_vec()
    };
    if dhal.push_rx(&packet).is_err() {
        return;
    }
    for _ in 0..4 {
        dev.poll(&mut dhal);
        dhal.now_ms += 10_000;
    }
    while dhal.pop_tx().is_some() {}
    // Whatever happened, a proper command still gets its answer.
    let mut chal = TestHal::<256>::new(3);
    let cfg = ClientConfig {
        nonce_reserve: 16,
        blank: BlankStart::Floor(5000),
        ..ClientConfig::default()
    };
    let mut client = Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, cfg).unwrap();
    let pkt = client
        .send_program(&mut chal, &[0x02, 0x02, 0x00])
        .unwrap()
        .to_vec();
    dhal.push_rx(&pkt).unwrap();
    dev.poll(&mut dhal);
    assert!(dhal.pop_tx().is_some(), "the device stopped answering");
}
