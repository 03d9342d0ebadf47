//! Zepto device firmware for the BBC micro:bit (nRF51822, Cortex-M0), bare metal.
//!
//! The whole device stack runs on the board: SADLP frames on UART0 (115200 8N1),
//! SASP (EAX over AES-128, or Speck-128/128 with the `speck` feature, or AES-128 on
//! the nRF51's ECB block with `hw-aes`: a board only, QEMU has no ECB), SAGDP, SACCP
//! and a Zepto VM with the built-in plugins. The `vm-only` feature builds the VM
//! alone: a SADLP frame carries a program straight to the VM and its reply buffer
//! comes back in a frame (no security, no delivery guarantee).
//!
//! Body parts: 0 Ping, 1 Echo, 2 LED matrix row 1 (P0.13, a [`DigitalPin`]),
//! 3 a simulated sensor (10 ms per measurement), 7 diagnostics ([`Diag`]).
#![no_std]
#![no_main]

mod board;
mod config;
mod diag;
mod mem;

use cortex_m_rt::entry;
use panic_halt as _;
use zepto_kernel::plugins::{Bodypart, DigitalPin, Echo, Ping, SimSensor};
use zepto_kernel::vm::VmConfig;

use board::Board;
use diag::Diag;

#[cfg(any(
    all(feature = "vm-only", feature = "vm-small"),
    all(feature = "vm-only", feature = "vm-medium"),
    all(feature = "vm-only", feature = "vm-one"),
    all(feature = "vm-one", feature = "vm-small"),
    all(feature = "vm-one", feature = "vm-medium"),
    all(feature = "vm-small", feature = "vm-medium"),
))]
compile_error!("choose one VM feature (build with --no-default-features)");

#[cfg(all(feature = "speck", feature = "hw-aes"))]
compile_error!("choose one cipher: `speck` or `hw-aes`");

/// The SASP key of this demo build. A real product gets its key (and fresh nonce
/// records) when it is paired with its client, not from the firmware image.
#[cfg(not(feature = "vm-only"))]
const KEY: [u8; 16] = *b"zepto-test-key!!";

/// The VM parameters reported by DEVICECAPS.
const VM_CONFIG: VmConfig = VmConfig {
    budget: 256,
    guaranteed_payload: 8,
    max_reply_buffer: (config::MTU - 32) as u16,
};

/// The SASP cipher of this build.
#[cfg(not(any(feature = "hw-aes", feature = "vm-only")))]
type Cipher = zepto_kernel::sasp::DefaultCipher;
/// The SASP cipher of this build: AES-128 on the ECB block.
#[cfg(all(feature = "hw-aes", not(feature = "vm-only")))]
type Cipher = zepto_kernel::hwaes::HardwareAes<board::Ecb>;

/// The AES-128 of SACCP's checksum: in software (also in the Speck builds) ...
#[cfg(not(any(feature = "hw-aes", feature = "vm-only")))]
type ChecksumAes = zepto_kernel::hwaes::SoftAes;
/// ... or on the ECB block.
#[cfg(all(feature = "hw-aes", not(feature = "vm-only")))]
type ChecksumAes = Cipher;

/// The device of this build.
#[cfg(not(feature = "vm-only"))]
type Dev<'t, 'p> = zepto_kernel::pump::Device<
    't,
    'p,
    config::Vm,
    Cipher,
    { config::HEAP },
    { config::HANDLES },
    0, // no event log: nothing on the board reads it
    ChecksumAes,
>;

/// Bytes of the stack state object (the device with its heap, or the VM and heap).
#[cfg(not(feature = "vm-only"))]
const STATE_BYTES: usize = core::mem::size_of::<Dev<'static, 'static>>();
#[cfg(feature = "vm-only")]
const STATE_BYTES: usize = core::mem::size_of::<config::Vm>()
    + core::mem::size_of::<zepto_kernel::heap::HeapMem<{ config::HEAP }, 2>>();

#[entry]
fn main() -> ! {
    // Interrupts stay masked: WFI wakes on a pending interrupt without a handler.
    cortex_m::interrupt::disable();
    let p = nrf51_pac::Peripherals::take().unwrap_or_else(|| halt());
    let mut board = Board::new(p.UART0, p.TIMER0, p.GPIO, p.NVMC, p.RNG);
    board.tx_text(config::NAME.as_bytes());
    let (mut ping, mut echo, mut led) = (Ping, Echo, DigitalPin { pin: 13 });
    let mut sensor = SimSensor::new(100, 1, 10);
    let mut diag = Diag::new(STATE_BYTES as u16);
    let mut table = [
        Bodypart::new(0, &mut ping),
        Bodypart::new(1, &mut echo),
        Bodypart::new(2, &mut led),
        Bodypart::new(3, &mut sensor),
        Bodypart::new(7, &mut diag),
    ];
    run(&mut board, &mut table)
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[cfg(not(feature = "vm-only"))]
fn run(board: &mut Board, table: &mut [Bodypart<'_>]) -> ! {
    // The device object is built in this frame and started in place (never moved).
    let mut dev = unkeyed(table);
    if dev.start(&KEY, board).is_err() {
        halt()
    }
    dev.run(board)
}

/// The device before its key, built straight into the caller's frame (the
/// configuration and the VM pass through this function's frame only).
#[cfg(not(feature = "vm-only"))]
#[inline(never)]
fn unkeyed<'t, 'p>(table: &'t mut [Bodypart<'p>]) -> Dev<'t, 'p> {
    use zepto_kernel::nonce_store::BlankStart;
    use zepto_kernel::pump::DeviceConfig;

    // Blank records (a new board, or erased flash; in QEMU at every boot, as it
    // never writes the flash image back) start at a random high value from the RNG
    // (`docs/security.md`).
    let cfg = DeviceConfig {
        bus: 0,
        mtu: config::MTU as u16,
        nonce_base: 0,
        nonce_reserve: zepto_kernel::nonce_store::DEFAULT_RESERVE,
        blank: BlankStart::RandomHigh,
    };
    Dev::unkeyed(config::Vm::new(VM_CONFIG), table, cfg)
}

#[cfg(feature = "vm-only")]
fn run(board: &mut Board, table: &mut [Bodypart<'_>]) -> ! {
    use zepto_kernel::hal::{PacketBus, Waiter};
    use zepto_kernel::heap::HeapMem;
    use zepto_kernel::vm::{ExecFlags, VmStep};

    let mut mem = HeapMem::<{ config::HEAP }, 2>::new();
    let mut heap = mem.heap();
    let h = heap.alloc().unwrap_or_else(|_| halt());
    let mut vm = config::Vm::new(VM_CONFIG);
    let flags = ExecFlags {
        is_first: true,
        is_last: true,
    };
    loop {
        let got = heap.fill_request(h, config::MTU, |buf| {
            Ok(board.receive(0, buf)?.unwrap_or(0))
        });
        match got {
            Ok(n) if n > 0 => {}
            _ => {
                board.wait_for(&Default::default());
                continue;
            }
        }
        let _ = heap.clear_reply(h);
        let mut step = vm.start(&mut heap, h, flags, table, board);
        while let Ok(VmStep::Waiting(w)) = step {
            let wake = board.wait_for(&w);
            step = vm.resume(&mut heap, h, table, board, wake);
        }
        if step.is_ok() {
            if let Ok(reply) = heap.reply(h) {
                let _ = board.send(0, reply);
            }
        }
    }
}
