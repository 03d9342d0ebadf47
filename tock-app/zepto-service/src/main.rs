//! Zepto service: the Zepto device stack as a Tock process.
//!
//! * Network side: `zepto_kernel::pump::Device` (SASP, SAGDP, SACCP, Zepto VM)
//!   with SADLP frames on the console (a host talks to it through the serial
//!   port), driven from the yield loop below.
//! * Local side: IPC clients send requests of the service protocol
//!   (`zepto_kernel::service`, `docs/service.md`); each client process has
//!   its own slot. A client is notified when its final reply is in its buffer
//!   (PENDING replies are not signalled).
//!
//! One loop serves both: it answers IPC requests, resumes waiting programs and
//! polls the pump. The pump's receive (`TockHal`'s `PacketBus::receive`) is
//! where the loop sleeps: it waits in Yield-Wait, with the console reading
//! into the pump's heap block, until a frame, an IPC request or the alarm.
#![no_main]
#![no_std]

mod hal;

use core::fmt::Write;
use hal::{Signals, TockHal, ALARM, CONSOLE, CONSOLE_SUB_READ, MTU};
use libtock::console::Console;
use libtock::runtime::{set_main, stack_size, TockSyscalls};
use libtock_platform::subscribe::Subscribe;
use libtock_platform::{share, DefaultConfig, ErrorCode, Syscalls};
use zepto_kernel::hal::Storage;
use zepto_kernel::nonce_store::BlankStart;
use zepto_kernel::plugins::{Bodypart, Echo, Ping, SimSensor};
use zepto_kernel::pump::{Device, DeviceConfig, Event};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::service::{Service, Status};
use zepto_kernel::vm::{VmConfig, VmSmall};
use zepto_tock_ipc::{Request, ServiceEnd, MAX_PROCESSES};

set_main! {main}
stack_size! {0x2000}

type Sys = TockSyscalls;
type Ipc = zepto_tock_ipc::Ipc<Sys>;

include!(concat!(env!("OUT_DIR"), "/key.rs"));

/// Package name (elf2tab `-n`) the service discovers to find its own index.
const NAME: &[u8] = b"zepto-service";

/// One service slot per process index.
const SLOTS: usize = MAX_PROCESSES as usize;
/// Largest program a client can load.
const PROGRAM: usize = 96;

type Vm = VmSmall<4, 8>;
type Dev<'t, 'p> = Device<'t, 'p, Vm, DefaultCipher, 640, 6>;
type Svc<'t, 'p> = Service<'t, 'p, Vm, SLOTS, PROGRAM, 384, 2>;

/// Longest sleep between two rounds of work: pins (no GPIO interrupts used)
/// and the clock's 32-bit wrap are checked at least this often.
const MAX_WAIT_MS: u32 = 100;

/// Nonces covered by one write of the nonce records.
const NONCE_RESERVE: u32 = 64;

macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(Console::writer(), $($t)*);
    }};
}

/// Touches a driver once so its grant is allocated now; a failed allocation
/// is reported and ends the process instead of failing later.
fn probe(name: &str, driver: u32, required: bool) -> bool {
    match Sys::command(driver, 0, 0, 0).to_result::<(), ErrorCode>() {
        Ok(()) => true,
        Err(ErrorCode::NoMem) => {
            say!("zepto-service: grant allocation failed for the {name} driver (NOMEM): raise the kernel heap in the TBF header");
            Sys::exit_terminate(2)
        }
        Err(e) if required => {
            say!("zepto-service: no {name} driver ({e:?})");
            Sys::exit_terminate(3)
        }
        Err(_) => false,
    }
}

/// Why the network side stays off.
enum Off {
    /// No key-value driver and no `ZEPTO_VOLATILE_NONCES`.
    Absent,
    /// `ZEPTO_VOLATILE_NONCES` without an RNG.
    NoRng,
    /// The key-value driver refused this app (`what` failed with `e`).
    Denied(&'static str, ErrorCode),
    /// The key-value driver failed otherwise.
    Failed(&'static str, ErrorCode),
    /// The device could not open its nonce records.
    Device(zepto_kernel::Error),
}

/// A key-value error: NOSUPPORT (no record this app may read or replace)
/// and INVAL (no write id) are how the kernel's storage permissions say no.
fn kv_off(what: &'static str, e: ErrorCode) -> Off {
    match e {
        ErrorCode::NoSupport | ErrorCode::Invalid => Off::Denied(what, e),
        e => Off::Failed(what, e),
    }
}

/// Checks the nonce storage before the device opens its records there
/// (blank records start as `docs/security.md` says for Tock: random high,
/// `BlankStart::RandomHigh`); `Err` says why the network side must stay off.
fn prepare_nonces(hal: &mut TockHal<'_>, rng: bool) -> Result<(), Off> {
    match hal.backing {
        hal::NonceBacking::KeyValue => match hal.load_nonces() {
            hal::KvLoad::Loaded => {
                // Rewrite (needs the permission to modify its own record) and
                // read back now, not at the first packet.
                if hal.flush().is_err() {
                    return Err(kv_off("rewrite", hal.kv_error.unwrap_or(ErrorCode::Fail)));
                }
                hal.verify_nonces().map_err(|e| kv_off("read back", e))
            }
            hal::KvLoad::Missing => {
                // The device writes the first records; create them with `add`,
                // which fails rather than replace a record that exists but that
                // this app may not read (that would start the nonces again).
                hal.create = true;
                Ok(())
            }
            hal::KvLoad::Failed(e) => Err(kv_off("read", e)),
        },
        hal::NonceBacking::Ram if !VOLATILE_NONCES => Err(Off::Absent),
        hal::NonceBacking::Ram if !rng => Err(Off::NoRng),
        hal::NonceBacking::Ram => Ok(()),
    }
}

/// How the nonces are kept, for the start-up line.
fn nonce_source(hal: &TockHal<'_>, blank: bool) -> &'static str {
    match (hal.backing, blank) {
        (hal::NonceBacking::KeyValue, false) => "key-value store",
        (hal::NonceBacking::KeyValue, true) => "key-value store (was blank: random high start)",
        (hal::NonceBacking::Ram, _) => "RAM, random high start (ZEPTO_VOLATILE_NONCES)",
    }
}

fn say_off(off: &Off) {
    match off {
        Off::Absent => say!(
            "zepto-service: network side off: no persistent storage for nonces (no key-value driver); a nonce must never be reused"
        ),
        Off::NoRng => say!("zepto-service: network side off: no RNG for a random nonce start"),
        Off::Denied(what, e) => say!(
            "zepto-service: network side off: key-value store denied ({what}: {e:?}): the kernel gives this app no storage permissions for its nonce record (see README, \"Nonces on a board with a key-value store\")"
        ),
        Off::Failed(what, e) => {
            say!("zepto-service: network side off: key-value store failed ({what}: {e:?})")
        }
        Off::Device(e) => say!("zepto-service: network side off: {e:?}"),
    }
}

fn main() {
    // IPC first: a client's notify that reaches the service before it has
    // subscribed still costs it a memory-protection region, and the dropped
    // upcall cannot be replayed (zepto_tock_ipc::regions). Nothing before
    // this yields, so no other process runs in between.
    let own = match Ipc::discover(NAME) {
        Ok(i) => i,
        Err(e) => {
            say!("zepto-service: cannot find own package name: {e:?}");
            return;
        }
    };
    match Ipc::with_service(own, start) {
        Ok(Err(ErrorCode::NoMem)) | Err(ErrorCode::NoMem) => say!(
            "zepto-service: grant allocation failed (NOMEM) while subscribing: raise the kernel heap in the TBF header"
        ),
        Ok(Err(e)) | Err(e) => say!("zepto-service: stopped: {e:?}"),
        Ok(Ok(())) => {}
    }
}

/// Sets up the device and runs the event loop while subscribed to IPC.
fn start(end: &ServiceEnd<'_>) -> Result<(), ErrorCode> {
    probe("console", CONSOLE, true);
    probe("alarm", ALARM, true);
    probe("IPC", zepto_tock_ipc::DRIVER_NUM, true);
    let rng = probe("RNG", 0x40001, false);
    let sig = Signals::new();
    let mut hal = match TockHal::new(&sig) {
        Ok(h) => h,
        Err(e) => {
            say!("zepto-service: alarm unusable: {e:?}");
            return Ok(());
        }
    };
    let ready = prepare_nonces(&mut hal, rng);

    let cfg = DeviceConfig {
        bus: 0,
        mtu: MTU as u16,
        nonce_base: 0,
        nonce_reserve: NONCE_RESERVE,
        blank: BlankStart::RandomHigh,
    };
    let (mut ping, mut echo, mut sensor) = (Ping, Echo, SimSensor::new(100, 1, 200));
    let mut dev_table = [
        Bodypart::new(1, &mut ping),
        Bodypart::new(2, &mut echo),
        Bodypart::new(3, &mut sensor),
    ];
    let opened = ready.and_then(|()| {
        Dev::new(
            &KEY,
            Vm::new(VmConfig::default()),
            &mut dev_table,
            cfg,
            &mut hal,
        )
        .map_err(|e| match hal.kv_error {
            Some(kv) => kv_off("create", kv),
            None => Off::Device(e),
        })
    });
    // Records the device just wrote to a blank key-value store must read back.
    let opened = opened.and_then(|d| {
        if hal.backing == hal::NonceBacking::KeyValue && d.nonces().started_blank() {
            hal.verify_nonces().map_err(|e| kv_off("read back", e))?;
        }
        Ok(d)
    });
    let mut device = match opened {
        Ok(d) => Some(d),
        Err(off) => {
            say_off(&off);
            None
        }
    };
    let nonces = match &device {
        Some(d) => nonce_source(&hal, d.nonces().started_blank()),
        None => "none",
    };

    let (mut sping, mut secho, mut ssensor) = (Ping, Echo, SimSensor::new(500, 5, 100));
    let mut svc_table = [
        Bodypart::new(1, &mut sping),
        Bodypart::new(2, &mut secho),
        Bodypart::new(3, &mut ssensor),
    ];
    let mut svc: Svc<'_, '_> =
        match Service::new(Vm::new(VmConfig::default()), &mut svc_table, &mut hal) {
            Ok(s) => s,
            Err(e) => {
                say!("zepto-service: service init failed: {e:?}");
                return Ok(());
            }
        };
    say!(
        "zepto-service: process {}, nonces: {}, GPIO pins: {}, IPC regions: {}",
        end.own().get(),
        nonces,
        hal.gpio_pins(),
        end.rules().regions
    );
    say!(
        "zepto-service: RAM: device {} B, HAL {} B",
        core::mem::size_of::<Dev<'_, '_>>(),
        core::mem::size_of::<TockHal<'_>>() + core::mem::size_of::<Signals>()
    );
    run(end, &sig, &mut hal, device.as_mut(), &mut svc)
}

fn log_events(events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let mut w = Console::writer();
    let _ = write!(w, "zepto-service: net");
    for e in events {
        let _ = match e {
            Event::Received(n) => write!(w, " rx {n} B;"),
            Event::ProgramStarted(n) => write!(w, " program {n} B;"),
            Event::VmDone(None) => write!(w, " vm ok;"),
            Event::VmDone(Some(c)) => write!(w, " vm exception {c};"),
            Event::Sent(n) => write!(w, " tx {n} B;"),
            Event::Dropped(err) => write!(w, " dropped {err:?};"),
            Event::Reinit => write!(w, " reinit;"),
            Event::Up(..) | Event::VmWaiting(..) => Ok(()),
        };
    }
    let _ = writeln!(w);
}

/// The event loop (never returns unless a system call fails).
fn run(
    end: &ServiceEnd<'_>,
    sig: &Signals,
    hal: &mut TockHal<'_>,
    mut dev: Option<&mut Dev<'_, '_>>,
    svc: &mut Svc<'_, '_>,
) -> Result<(), ErrorCode> {
    let mut waiting: [Option<Request>; SLOTS] = [None; SLOTS];
    share::scope::<
        (
            Subscribe<Sys, CONSOLE, CONSOLE_SUB_READ>,
            Subscribe<Sys, ALARM, 0>,
        ),
        _,
        _,
    >(|h| {
        let (sub_rx, sub_alarm) = h.split();
        Sys::subscribe::<_, _, DefaultConfig, CONSOLE, CONSOLE_SUB_READ>(sub_rx, &sig.read)?;
        Sys::subscribe::<_, _, DefaultConfig, ALARM, 0>(sub_alarm, &sig.alarm)?;
        say!("zepto-service: ready");
        let mut net_wait = None;
        loop {
            // Local clients.
            while let Some(req) = end.take() {
                let slot = req.client.get() as usize;
                let st = match req
                    .with_buffer(|buf| (buf.first().copied(), svc.handle(slot, buf, hal)))
                {
                    Ok((op, st)) => {
                        say!(
                            "zepto-service: client {slot} op {op:?} ({} B) -> {st:?}",
                            req.len()
                        );
                        st
                    }
                    Err(why) => {
                        // Not read: the kernel may not have mapped it.
                        say!(
                            "zepto-service: client {slot} refused unread ({} B at {:#x}): {why:?}",
                            req.len(),
                            req.addr()
                        );
                        let _ = end.refuse(req.client, why);
                        continue;
                    }
                };
                if let Some(w) = waiting.get_mut(slot) {
                    *w = None;
                }
                if st == Status::Pending {
                    if let Some(w) = waiting.get_mut(slot) {
                        *w = Some(req);
                    }
                } else {
                    let _ = end.reply(req.client);
                }
            }
            let sp = svc.poll(hal);
            if let Some(slot) = sp.finished {
                match waiting.get_mut(slot).and_then(Option::take) {
                    Some(req) => {
                        // Written (and notified) only over the PENDING reply: a
                        // client that gave up has a new request there.
                        // Accepted when it arrived; IPC regions stay mapped.
                        let st = req.with_buffer(|buf| svc.deliver(slot, buf)).ok().flatten();
                        say!("zepto-service: client {slot} program done -> {st:?}");
                        if st.is_some() {
                            let _ = end.reply(req.client);
                        }
                    }
                    None => {
                        let _ = svc.deliver(slot, &mut []);
                    }
                }
                continue;
            }
            // Sleep until the earliest deadline, a frame or any other upcall.
            let mut ms = MAX_WAIT_MS;
            for w in [net_wait, sp.wait].into_iter().flatten() {
                if let Some(t) = w.timeout_ms {
                    ms = ms.min(t);
                }
            }
            match dev.as_deref_mut() {
                Some(d) => {
                    // The pump's receive waits (see `TockHal`).
                    hal.sleep_ms = ms;
                    net_wait = Some(d.poll(hal));
                    log_events(d.events());
                }
                None if ms > 0 => {
                    sig.alarm.set(None);
                    Sys::command(ALARM, 5, hal.ms_to_ticks(ms), 0).to_result::<u32, ErrorCode>()?;
                    Sys::yield_wait();
                }
                None => {}
            }
        }
    })
}
