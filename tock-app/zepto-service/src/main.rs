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
mod mem;
mod out;
mod stack;

use hal::{Signals, TockHal, ALARM, CONSOLE, CONSOLE_SUB_READ, MTU};
use libtock::runtime::{set_main, stack_size, TockSyscalls};
use libtock_platform::subscribe::Subscribe;
use libtock_platform::{share, DefaultConfig, ErrorCode, Syscalls};
use out::{say, Line};
use zepto_kernel::hal::Storage;
use zepto_kernel::nonce_store::BlankStart;
use zepto_kernel::plugins::{Bodypart, Echo, Ping, SimSensor};
use zepto_kernel::pump::{Device, DeviceConfig, Event};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::service::{Service, Status};
use zepto_kernel::vm::{VmConfig, VmSmall};
use zepto_tock_ipc::{Refusal, Request, ServiceEnd, MAX_PROCESSES};

set_main! {main}
stack_size! {STACK_SIZE}

type Sys = TockSyscalls;
type Ipc = zepto_tock_ipc::Ipc<Sys>;

include!(concat!(env!("OUT_DIR"), "/config.rs"));

/// Package name (elf2tab `-n`) the service discovers to find its own index.
const NAME: &[u8] = b"zepto-service";

/// One service slot per process index.
const SLOTS: usize = MAX_PROCESSES as usize;
/// Largest program a client can load.
const PROGRAM: usize = 96;

type Vm = VmSmall<4, 8>;
/// Heap arena and handles of the pump.
const HEAP: usize = 640;
const HANDLES: usize = 6;
/// Heap arena and handles of the service: a request and its reply at a time
/// (the heap's code is one copy whatever the sizes).
const SVC_HEAP: usize = 384;
const SVC_HANDLES: usize = 2;
/// Network events kept per poll for the console log (the pump's default).
const EVENTS: usize = zepto_kernel::pump::EVENT_LOG;
type Dev<'t, 'p> = Device<'t, 'p, Vm, DefaultCipher, HEAP, HANDLES, EVENTS>;
type Svc<'t, 'p> = Service<'t, 'p, Vm, SLOTS, PROGRAM, SVC_HEAP, SVC_HANDLES>;

/// Longest sleep between two rounds of work: pins (no GPIO interrupts used)
/// and the clock's 32-bit wrap are checked at least this often.
const MAX_WAIT_MS: u32 = 100;

/// Nonces covered by one write of the nonce records.
const NONCE_RESERVE: u32 = 64;

/// Touches a driver once so its grant is allocated now; a failed allocation
/// is reported and ends the process instead of failing later.
fn probe(name: &str, driver: u32, required: bool) -> bool {
    match Sys::command(driver, 0, 0, 0).to_result::<(), ErrorCode>() {
        Ok(()) => true,
        Err(ErrorCode::NoMem) => {
            Line::new("grant allocation failed for the ")
                .s(name)
                .s(" driver (NOMEM): raise the kernel heap in the TBF header")
                .end();
            Sys::exit_terminate(2)
        }
        Err(e) if required => {
            Line::new("no ").s(name).s(" driver (").err(e).s(")").end();
            Sys::exit_terminate(3)
        }
        Err(_) => false,
    }
}

/// Why the network side stays off.
#[derive(Clone, Copy)]
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
    let l = Line::new("network side off: ");
    match *off {
        Off::Absent => l.s(
            "no persistent storage for nonces (no key-value driver); a nonce must never be reused",
        ),
        Off::NoRng => l.s("no RNG for a random nonce start"),
        Off::Denied(what, e) => l.s("key-value store denied (").s(what).s(": ").err(e).s(
            "): the kernel gives this app no storage permissions for its nonce record (see README, \"Nonces on a board with a key-value store\")",
        ),
        Off::Failed(what, e) => l.s("key-value store failed (").s(what).s(": ").err(e).s(")"),
        Off::Device(e) => kernel_error(l, e),
    }
    .end();
}

/// Appends a kernel error as its number (its position in `zepto_kernel::Error`).
fn kernel_error(l: Line, e: zepto_kernel::Error) -> Line {
    l.s("zepto_kernel::Error #").dec(e as u32)
}

/// Names of the service protocol's statuses (`zepto_kernel::service::Status`).
const STATUS_NAMES: [&str; 10] = [
    "Ok",
    "VmException",
    "UnknownOp",
    "Malformed",
    "TooBig",
    "NoProgram",
    "Busy",
    "Pending",
    "Internal",
    "NoSlot",
];

fn status_name(st: Status) -> &'static str {
    STATUS_NAMES.get(st as usize).copied().unwrap_or("?")
}

fn refusal_name(why: Refusal) -> &'static str {
    match why {
        Refusal::Rules => "Rules",
        Refusal::NotFirst => "NotFirst",
        Refusal::NoRegion => "NoRegion",
    }
}

fn main() {
    stack::paint();
    // IPC first: a client's notify that reaches the service before it has
    // subscribed still costs it a memory-protection region, and the dropped
    // upcall cannot be replayed (zepto_tock_ipc::regions). Nothing before
    // this yields, so no other process runs in between.
    let own = match Ipc::discover(NAME) {
        Ok(i) => i,
        Err(e) => {
            Line::new("cannot find own package name: ").err(e).end();
            return;
        }
    };
    match Ipc::with_service(own, start) {
        Ok(Err(ErrorCode::NoMem)) | Err(ErrorCode::NoMem) => say(
            "grant allocation failed (NOMEM) while subscribing: raise the kernel heap in the TBF header",
        ),
        Ok(Err(e)) | Err(e) => Line::new("stopped: ").err(e).end(),
        Ok(Ok(())) => {}
    }
}

/// Creates the service. Never inlined: `Service::new`'s temporaries (its
/// heap is built, then moved into place) live in this function's frame,
/// which is gone again before the event loop runs.
#[inline(never)]
fn new_service<'t, 'p>(
    table: &'t mut [Bodypart<'p>],
    hal: &mut TockHal<'_>,
) -> Result<Svc<'t, 'p>, zepto_kernel::Error> {
    Service::new(Vm::new(VmConfig::default()), table, hal)
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
            Line::new("alarm unusable: ").err(e).end();
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
    // The device (about 1.3 KB) is built straight into this frame and
    // started in place, and the service (about 1.2 KB) is built in `serve`'s:
    // neither is ever moved, so no second copy of either is on the stack.
    // (With `Dev::new` this frame held the device twice, as `new`'s result
    // and as the object it built: 3.6 KB on qemu_rv32_virt, and the start-up
    // overran the 6656-byte stack.)
    let mut dev = Dev::unkeyed(Vm::new(VmConfig::default()), &mut dev_table, cfg);
    let opened = match ready {
        Ok(()) => dev.start(&KEY, &mut hal),
        // Not started; why is in `ready`.
        Err(_) => Err(zepto_kernel::Error::InvalidState),
    };
    let off = match (ready, opened) {
        (Err(off), _) => Some(off),
        (Ok(()), Err(e)) => Some(match hal.kv_error {
            Some(kv) => kv_off("create", kv),
            None => Off::Device(e),
        }),
        // Records the device just wrote to a blank key-value store must read back.
        (Ok(()), Ok(()))
            if hal.backing == hal::NonceBacking::KeyValue && dev.nonces().started_blank() =>
        {
            hal.verify_nonces().err().map(|e| kv_off("read back", e))
        }
        (Ok(()), Ok(())) => None,
    };
    let device = match off {
        Some(off) => {
            say_off(&off);
            None
        }
        None => Some(&mut dev),
    };
    let nonces = match &device {
        Some(d) => nonce_source(&hal, d.nonces().started_blank()),
        None => "none",
    };
    serve(end, &sig, &mut hal, device, nonces)
}

/// Sets up the service and runs the event loop. Never inlined: the service
/// (about 1.2 KB) lives in this function's frame, which is not on the stack
/// yet while `Dev::start` runs in `start`'s (the start-up's deepest path).
#[inline(never)]
fn serve(
    end: &ServiceEnd<'_>,
    sig: &Signals,
    hal: &mut TockHal<'_>,
    device: Option<&mut Dev<'_, '_>>,
    nonces: &str,
) -> Result<(), ErrorCode> {
    let (mut sping, mut secho, mut ssensor) = (Ping, Echo, SimSensor::new(500, 5, 100));
    let mut svc_table = [
        Bodypart::new(1, &mut sping),
        Bodypart::new(2, &mut secho),
        Bodypart::new(3, &mut ssensor),
    ];
    let mut made = new_service(&mut svc_table, hal);
    let svc = match &mut made {
        Ok(s) => s,
        Err(e) => {
            kernel_error(Line::new("service init failed: "), *e).end();
            return Ok(());
        }
    };
    Line::new("process ")
        .dec(end.own().get())
        .s(", nonces: ")
        .s(nonces)
        .s(", GPIO pins: ")
        .dec(hal.gpio_pins())
        .s(", IPC regions: ")
        .dec(u32::from(end.rules().regions))
        .end();
    Line::new("RAM: device ")
        .dec(core::mem::size_of::<Dev<'_, '_>>() as u32)
        .s(" B, service ")
        .dec(core::mem::size_of::<Svc<'_, '_>>() as u32)
        .s(" B, HAL ")
        .dec((core::mem::size_of::<TockHal<'_>>() + core::mem::size_of::<Signals>()) as u32)
        .s(" B")
        .end();
    run(end, sig, hal, device, svc)
}

fn log_events(events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let mut l = Line::new("net");
    for e in events {
        l = match *e {
            Event::Received(n) => l.s(" rx ").dec(n.into()).s(" B;"),
            Event::ProgramStarted(n) => l.s(" program ").dec(n.into()).s(" B;"),
            Event::VmDone(None) => l.s(" vm ok;"),
            Event::VmDone(Some(c)) => l.s(" vm exception ").dec(c.into()).s(";"),
            Event::Sent(n) => l.s(" tx ").dec(n.into()).s(" B;"),
            Event::Dropped(err) => kernel_error(l.s(" dropped "), err).s(";"),
            Event::Reinit => l.s(" reinit;"),
            _ => l,
        };
    }
    l.end();
}

/// Prints the stack's high-water mark when it is deeper than `*last`.
#[inline(never)]
fn report_stack(phase: &str, last: &mut usize) {
    let (used, size) = stack::peak();
    if used > *last {
        *last = used;
        Line::new("stack peak, ")
            .s(phase)
            .s(": ")
            .dec(used as u32)
            .s(" of ")
            .dec(size as u32)
            .s(" B")
            .end();
    }
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
        // The stack's peak so far is the start-up's; paint again to see the
        // event loop's own peak.
        let mut stack_seen = 0;
        report_stack("start-up", &mut stack_seen);
        stack::paint();
        stack_seen = 0;
        say("ready");
        let mut net_wait = None;
        loop {
            report_stack("event loop", &mut stack_seen);
            // Local clients.
            while let Some(req) = end.take() {
                let slot = req.client.get() as usize;
                let st = match req
                    .with_buffer(|buf| (buf.first().copied(), svc.handle(slot, buf, hal)))
                {
                    Ok((op, st)) => {
                        let l = Line::new("client ").dec(slot as u32).s(" op ");
                        match op {
                            Some(op) => l.dec(op.into()),
                            None => l.s("-"),
                        }
                        .s(" (")
                        .dec(req.len() as u32)
                        .s(" B) -> ")
                        .s(status_name(st))
                        .end();
                        st
                    }
                    Err(why) => {
                        // Not read: the kernel may not have mapped it.
                        Line::new("client ")
                            .dec(slot as u32)
                            .s(" refused unread (")
                            .dec(req.len() as u32)
                            .s(" B at ")
                            .hex(req.addr())
                            .s("): ")
                            .s(refusal_name(why))
                            .end();
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
                        Line::new("client ")
                            .dec(slot as u32)
                            .s(" program done -> ")
                            .s(st.map_or("dropped (buffer changed)", status_name))
                            .end();
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
