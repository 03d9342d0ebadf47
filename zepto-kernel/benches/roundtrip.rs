//! Device-side cost of one 64-byte program round trip: the encrypted command packet
//! goes in, `Device::poll` runs SASP, SAGDP, SACCP and the VM (an EXEC of the echo
//! plugin) and sends the encrypted reply. The client side is not timed.
//!
//! Run: `cargo bench -p zepto-kernel --bench roundtrip`. With `--speck`, the same with
//! the Speck cipher (build with `--features speck`).
//!
//! It also prints a core check: the time per step of two chains of dependent
//! multiply-adds, one in a register, one through a stack slot (store, then load). On a
//! machine whose cores do not always run alike (a virtual machine whose host moves or
//! shares its cores) they tell what changed between runs; `scripts/bench-spread` runs
//! the benchmark several times and summarizes (`docs/performance.md`).

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
    let register = ps_per_step(register_chain);
    let memory = ps_per_step(memory_chain);
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
    println!("  core check: register chain {register} ps/step, store-load chain {memory} ps/step");
}

/// The best of 20 timings of `chain` (a million dependent steps), in picoseconds per
/// step.
fn ps_per_step(chain: fn(u64) -> u64) -> u128 {
    const STEPS: u64 = 1_000_000;
    let mut best = u128::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        black_box(chain(black_box(STEPS)));
        best = best.min(t.elapsed().as_nanos());
    }
    best * 1000 / u128::from(STEPS)
}

/// A chain of dependent multiply-adds in one register (each step needs the one
/// before): it follows the core's clock and nothing else.
#[inline(never)]
fn register_chain(steps: u64) -> u64 {
    let mut x: u64 = black_box(1);
    for _ in 0..steps {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    x
}

/// The same kind of chain through memory: each step stores its value and loads it back
/// (`black_box` makes the value live in a stack slot).
#[inline(never)]
fn memory_chain(steps: u64) -> u64 {
    let mut x: u64 = black_box(1);
    for _ in 0..steps {
        x = x.wrapping_mul(3).wrapping_add(1);
        x = black_box(x);
    }
    x
}
