//! The pump thread's body: the Zepto device (SADLP on the packet UART, SASP, SAGDP,
//! SACCP, Zepto VM: [`Device::poll`]) and the local service, driven by one wake
//! semaphore with no busy waiting.
//!
//! Each round: take the PM policy lock, handle what is due (a received packet, a VM
//! whose wait ended, SAGDP's resend timer, local client requests), then release the
//! lock unless a frame is half received (checkpointing the nonces first if they moved),
//! and sleep on the semaphore until the earliest of what the device and the service
//! wait for. The UART receive interrupt, GPIO pin interrupts, local clients and the PM
//! notifier (only when a checkpoint is still owed) give the semaphore.

use core::sync::atomic::{AtomicBool, Ordering};

use zephyr::kconfig;
use zepto_kernel::hal::{Clock, Waiter, WaitingFor, WakeReason};
use zepto_kernel::plugins::{Bodypart, DigitalPin, Echo, Ping, SimSensor};
use zepto_kernel::pump::{Device, DeviceConfig, Event};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::service::Service;
use zepto_kernel::vm::VmConfig;
use zepto_kernel::Error;

use crate::blank;
use crate::hal::{StorageKind, ZephyrHal, MAX_PACKET};
use crate::pm;
use crate::service::LocalService;

/// The configured VM level (`CONFIG_ZEPTO_VM_LEVEL_*`).
#[cfg(CONFIG_ZEPTO_VM_LEVEL_ONE)]
type AppVm = zepto_kernel::vm::VmOne;
/// The configured VM level (`CONFIG_ZEPTO_VM_LEVEL_*`).
#[cfg(CONFIG_ZEPTO_VM_LEVEL_TINY)]
type AppVm = zepto_kernel::vm::VmTiny<8>;
/// The configured VM level (`CONFIG_ZEPTO_VM_LEVEL_*`).
#[cfg(CONFIG_ZEPTO_VM_LEVEL_SMALL)]
type AppVm = zepto_kernel::vm::VmSmall<8, 16>;
/// The configured VM level (`CONFIG_ZEPTO_VM_LEVEL_*`).
#[cfg(CONFIG_ZEPTO_VM_LEVEL_MEDIUM)]
type AppVm = zepto_kernel::vm::VmMedium<8, 16, 2>;

/// Zepto Heap of the network device (`CONFIG_ZEPTO_HEAP_SIZE`).
pub(crate) const HEAP: usize = kconfig::CONFIG_ZEPTO_HEAP_SIZE as usize;
/// Longest pause inside a frame before its start is given up (ms).
const FRAME_GAP_MS: u32 = 500;

/// How often a clock floor start reads the clock while it waits for the second to
/// turn (ms).
const HOLD_POLL_MS: u32 = 100;
/// Uptime after which a clock floor start that still waits says so (ms).
const HOLD_NOTICE_MS: u64 = 3000;

/// Heap handles: the pump's four plus two PARALLEL pseudo-threads.
pub(crate) const HANDLES: usize = 6;

fn vm_config() -> VmConfig {
    VmConfig {
        budget: 256,
        guaranteed_payload: 64,
        max_reply_buffer: (MAX_PACKET as u16).min(256),
    }
}

/// Parses `CONFIG_ZEPTO_KEY` (32 hex digits).
pub(crate) fn key() -> Option<[u8; 16]> {
    let hex = kconfig::CONFIG_ZEPTO_KEY.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (k, pair) in key.iter_mut().zip(hex.chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        let (Some(hi), Some(lo)) = (digit(*pair.first()?), digit(*pair.get(1)?)) else {
            return None;
        };
        *k = (hi * 16 + lo) as u8;
    }
    Some(key)
}

/// The network device's configuration: this build's MTU and blank start.
fn device_config(start: &blank::Start) -> DeviceConfig {
    DeviceConfig {
        mtu: MAX_PACKET as u16,
        blank: start.blank,
        ..DeviceConfig::default()
    }
}

/// The network device as the pump thread holds it.
type AppDevice<'t, 'p> = Device<'t, 'p, AppVm, DefaultCipher, HEAP, HANDLES>;

/// Starts the network device in place: its nonces must be in persistent storage.
/// Blank records (a new or wiped device, damaged records, another key's) start as
/// this build's [`blank::Start`] says; a refused start says why and what to do.
#[inline(never)]
fn start_device(
    dev: &mut AppDevice<'_, '_>,
    key: &[u8; 16],
    hal: &mut ZephyrHal,
    start: &blank::Start,
) -> Result<(), Error> {
    if hal.storage_kind() == StorageKind::None {
        return Err(Error::Unsupported);
    }
    dev.start(key, hal)?;
    let (nfs, nlw) = (dev.nonces().nfs(), dev.nonces().nlw());
    // Only the blank start this build can make has its line in the image: random
    // with an entropy driver, otherwise the host clock's floor (a build that refuses
    // blank records never starts blank).
    if !dev.nonces().started_blank() {
        say!("zepto: nonce records found (NFS ", nfs, ", NLW ", nlw, ")");
    } else if cfg!(CONFIG_ZEPTO_BLANK_START_RANDOM_HIGH) {
        say!(
            "zepto: blank nonce records: random high start (NFS ",
            nfs,
            ", NLW ",
            nlw,
            ")"
        );
    } else if let Some(secs) = start.hold_until {
        say!(
            "zepto: blank nonce records: host clock floor start at ",
            secs,
            " s since 1970 (NFS ",
            nfs,
            ", NLW ",
            nlw,
            "); sending from the next second"
        );
    }
    Ok(())
}

/// Says why blank records kept the network device off, and what to do. Each build
/// carries only the reasons its blank start can give (`blank::choose`): the host
/// clock's with `CONFIG_ZEPTO_BLANK_START_HOST_CLOCK`, the missing source with
/// `CONFIG_ZEPTO_BLANK_START_REFUSE`; a random start never refuses.
fn explain_refusal(why: Option<blank::Refusal>) {
    match why {
        #[cfg(CONFIG_ZEPTO_BLANK_START_HOST_CLOCK)]
        Some(blank::Refusal::ClockOutOfRange(secs)) => say!(
            "zepto: blank nonce records, and the host clock reads ",
            secs,
            " s since 1970 (before 2024 or after 2093): no safe start, network device off (local clients still served). Set the host's clock, then restart"
        ),
        #[cfg(CONFIG_ZEPTO_BLANK_START_HOST_CLOCK)]
        Some(blank::Refusal::NoClock) => say!(
            "zepto: blank nonce records, and the host clock cannot be read: no safe start, network device off (local clients still served). Run QEMU with -semihosting-config enable=on,target=native"
        ),
        #[cfg(CONFIG_ZEPTO_BLANK_START_REFUSE)]
        Some(blank::Refusal::NoSource) => say!(
            "zepto: blank nonce records, and this build has no entropy driver and no clock to start them from (CONFIG_ZEPTO_BLANK_START_REFUSE): network device off (local clients still served). Restore the records, or build with an entropy driver (CONFIG_ENTROPY_GENERATOR) or with ARM semihosting's host clock (CONFIG_SEMIHOST)"
        ),
        _ => say!(
            "zepto: device start failed (",
            Error::NotProvisioned,
            "): network device off"
        ),
    }
}

/// Set once the network device serves its link.
static READY: AtomicBool = AtomicBool::new(false);

/// True once the network device serves its link (for test hooks: a clock floor
/// start waits for the host clock first).
#[no_mangle]
pub extern "C" fn zepto_device_ready() -> bool {
    READY.load(Ordering::Relaxed)
}

/// The start-up line that says where packets come in.
#[cfg(not(CONFIG_ZEPTO_TRANSPORT_UDP))]
fn announce(hal: &ZephyrHal) {
    READY.store(true, Ordering::Relaxed);
    say!("zepto: device ready: ", hal.link().describe(), " (SASP)");
}

/// The start-up line that says where packets come in.
#[cfg(CONFIG_ZEPTO_TRANSPORT_UDP)]
fn announce(hal: &ZephyrHal) {
    READY.store(true, Ordering::Relaxed);
    say!(
        "zepto: device ready: ",
        hal.link().describe(),
        " on UDP port ",
        hal.link().port(),
        " (SASP)"
    );
}

fn log_events(events: &[Event]) {
    for e in events {
        match e {
            Event::Received(n) => say!("zepto: bus <- ", *n, " bytes"),
            Event::ProgramStarted(n) => say!("zepto: VM start, program ", *n, " bytes"),
            Event::VmWaiting(w) => match w.timeout_ms {
                Some(ms) => say!("zepto: VM waits ", ms, " ms"),
                None => say!("zepto: VM waits"),
            },
            Event::VmDone(None) => say!("zepto: VM done"),
            Event::VmDone(Some(c)) => say!("zepto: VM exception ", *c),
            Event::Sent(n) => say!("zepto: bus -> ", *n, " bytes"),
            Event::Dropped(e) => say!("zepto: packet dropped (", *e, ")"),
            Event::Reinit => say!("zepto: stack re-initialised"),
            Event::Up(..) => {}
        }
    }
}

/// Runs the device and the local service. Never returns.
pub fn zepto_main_pump(hal: &mut ZephyrHal) -> ! {
    say!(
        "zepto: pump running (t=",
        hal.now_ms(),
        " ms, random source: ",
        ZephyrHal::random_source(),
        ", watchdog: ",
        if hal.watchdog_armed() {
            "armed"
        } else {
            "none"
        },
        ", nonce storage: ",
        hal.storage_kind().name(),
        ", pins: ",
        hal.pin_count(),
        ", PM hooks: ",
        if pm::enabled() {
            "on"
        } else {
            "off (no CONFIG_PM)"
        },
        ")"
    );
    if !hal.storage_path().is_empty() {
        say!("zepto: nonce records in ", hal.storage_path());
    }

    // Body parts of the network device: 1 Ping, 2 Echo, 3 simulated sensor, 4 pin 0.
    let (mut ping, mut echo) = (Ping, Echo);
    let mut sensor = SimSensor::new(200, 1, 50);
    let mut pin = DigitalPin { pin: 0 };
    let mut table = [
        Bodypart::new(1, &mut ping),
        Bodypart::new(2, &mut echo),
        Bodypart::new(3, &mut sensor),
        Bodypart::new(4, &mut pin),
    ];
    // The local service has its own VM and body parts (same kinds).
    let (mut sping, mut secho) = (Ping, Echo);
    let mut ssensor = SimSensor::new(100, 10, 50);
    let mut spin = DigitalPin { pin: 0 };
    let mut stable = [
        Bodypart::new(1, &mut sping),
        Bodypart::new(2, &mut secho),
        Bodypart::new(3, &mut ssensor),
        Bodypart::new(4, &mut spin),
    ];

    let start = blank::choose();
    // The device and the service are built where they stay, in this frame: each is
    // about a kilobyte, and a copy through a temporary would cost its size again in
    // stack.
    let mut dev = Device::unkeyed(AppVm::new(vm_config()), &mut table, device_config(&start));
    // A clock floor start sends nothing until the clock's second has turned.
    let mut hold = None;
    let on = match key() {
        None => {
            say!("zepto: CONFIG_ZEPTO_KEY is not 32 hex digits: network device off");
            false
        }
        Some(k) => match start_device(&mut dev, &k, hal, &start) {
            Ok(()) => {
                hold = start.hold_until.filter(|_| dev.nonces().started_blank());
                if hold.is_none() {
                    announce(hal);
                }
                true
            }
            Err(Error::Unsupported) => {
                say!("zepto: no persistent nonce storage: network device off (local service only)");
                false
            }
            Err(Error::NotProvisioned) => {
                explain_refusal(start.refusal);
                false
            }
            Err(e) => {
                say!("zepto: device start failed (", e, "): network device off");
                false
            }
        },
    };
    let (hold_since, mut hold_noted) = (hal.now_ms(), false);
    let mut svc = Service::new(AppVm::new(vm_config()), &mut stable, hal);
    let mut local = match svc.as_mut() {
        Ok(s) => Some(LocalService::new(s)),
        Err(e) => {
            say!("zepto: local service start failed (", *e, ")");
            None
        }
    };
    pm::init();

    let mut checkpoints = on.then(|| pm::Checkpoints::new(&dev));
    loop {
        pm::hold(true);
        let mut wait = WaitingFor::default();
        if let Some(secs) = hold {
            // Blank records started at the host clock's floor: wait until its second
            // has passed (checked every HOLD_POLL_MS) before the device may send.
            // A clock that does not advance keeps the device waiting (said once).
            if blank::wall_clock_s().is_some_and(|now| now > secs) {
                hold = None;
                announce(hal);
            } else {
                if !hold_noted && hal.now_ms().saturating_sub(hold_since) > HOLD_NOTICE_MS {
                    hold_noted = true;
                    say!(
                        "zepto: the host clock has not passed ",
                        secs,
                        " s since 1970 yet: the network device waits for it (local clients are served)"
                    );
                }
                wait = WaitingFor::time(HOLD_POLL_MS);
            }
        }
        if on && hold.is_none() {
            if pm::checkpoint_requested() {
                if let Some(c) = checkpoints.as_mut() {
                    c.update(&mut dev, hal);
                }
            }
            let forged = dev.sasp_stats().auth_failures;
            wait = dev.poll(hal);
            log_events(dev.events());
            if dev.sasp_stats().auth_failures != forged {
                // Dropped without an answer: say so, or a client under another key
                // or cipher sees only its packets arrive.
                say!("zepto: packet not authentic (another key or cipher?): dropped");
            }
        }
        if let Some(svc) = local.as_mut() {
            if let Some(w) = svc.poll(hal) {
                wait = wait.merge(&w);
            }
        }
        if !on || hold.is_some() {
            // No device reads the link (off, or waiting for the clock): what arrives
            // is dropped, so it cannot keep the pump awake.
            hal.discard_input();
        } else if hal.mid_frame() {
            // More bytes are queued or a frame is half received: keep the lock, and
            // poll again at once if bytes are waiting (the waiter returns early). A
            // frame whose rest does not come within FRAME_GAP_MS is given up.
            let gap = wait.merge(&WaitingFor::time(FRAME_GAP_MS));
            if hal.wait_for(&gap) == WakeReason::Timeout {
                hal.abandon_partial_frame();
            }
            continue;
        }
        if pm::enabled() {
            // The SoC may suspend (and lose RAM) once the lock goes: make the nonces
            // exact in storage first if they moved, so the next start needs no
            // resynchronisation.
            if let Some(c) = checkpoints.as_mut() {
                c.update(&mut dev, hal);
            }
        }
        pm::hold(false);
        let _ = hal.wait_for(&wait);
    }
}
