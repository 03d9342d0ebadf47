//! Device-side cost of one 64-byte program round trip: the encrypted command packet
//! goes in, `Device::poll` runs SASP, SAGDP, SACCP and the VM (an EXEC of the echo
//! plugin) and sends the encrypted reply. The client side is not timed.
//!
//! Run: `cargo bench -p zepto-kernel --bench roundtrip`. With `--speck`, the same with
//! the Speck cipher (build with `--features speck`).

use std::hint::black_box;
use std::time::Instant;

use zepto_kernel::client::{Client, ClientConfig};
use zepto_kernel::plugins::{Bodypart, Echo};
use zepto_kernel::pump::{self, Device, DeviceConfig};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::Instruction;
use zepto_kernel::vm::{VmConfig, VmSmall};

const KEY: [u8; 16] = [0x42; 16];

fn main() {
    // EXEC 2 with 61 data bytes: a 64-byte program (opcode, body part, size, data).
    let data = [0x5a; 61];
    let mut program = [0u8; 80];
    let n = Instruction::Exec {
        bodypart: 2,
        data: &data,
    }
    .encode(&mut program)
    .expect("encodes");
    let program = &program[..n];
    assert_eq!(program.len(), 64);

    let cfg = DeviceConfig {
        mtu: 256,
        nonce_reserve: 1 << 20,
        ..DeviceConfig::default()
    };
    let mut dhal = TestHal::<256>::new(1);
    let mut chal = TestHal::<256>::new(2);
    pump::provision_new_key::<DefaultCipher, _>(&mut dhal, &cfg, &KEY).expect("provision");
    let mut echo = Echo;
    let mut table = [Bodypart::new(2, &mut echo)];
    let mut dev = Device::<VmSmall<8, 16>, DefaultCipher, 1024, 6>::new(
        &KEY,
        VmSmall::new(VmConfig::default()),
        &mut table,
        cfg,
        &mut dhal,
    )
    .expect("device");
    let ccfg = ClientConfig {
        nonce_reserve: 1 << 20,
        blank: zepto_kernel::nonce_store::BlankStart::Floor(0),
        ..ClientConfig::default()
    };
    let mut client = Client::<DefaultCipher, 1024, 4>::new(&KEY, &mut chal, ccfg).expect("client");

    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this is a short
    // smoke run.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        20_000
    } else {
        20
    };
    let mut samples = Vec::with_capacity(rounds);
    let (mut req_len, mut rep_len) = (0, 0);
    for _ in 0..rounds {
        let pkt = client.send_program(&mut chal, program).expect("command");
        req_len = pkt.len();
        dhal.push_rx(pkt).expect("queue");
        let t = Instant::now();
        black_box(dev.poll(&mut dhal));
        samples.push(t.elapsed().as_nanos() as u64);
        let reply = dhal.pop_tx().expect("reply");
        rep_len = reply.len();
        client.receive(&mut chal, &reply).expect("reply accepted");
    }
    samples.sort_unstable();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "device round trip, 64-byte program ({req_len}-byte packet in, {rep_len}-byte packet out), {rounds} rounds:"
    );
    println!(
        "  median {} ns, p10 {} ns, p90 {} ns",
        pct(50),
        pct(10),
        pct(90)
    );
}
