//! The main pump ("main loop") of a Zepto device (`reference-implementation/zepto-os.rst`,
//! "Main Loop"): it moves one packet through SASP -> SAGDP -> SACCP -> Zepto VM and the
//! reply back through SACCP -> SAGDP -> SASP, calling each layer's handler itself (the
//! handlers never call each other) and `convert_reply_to_request` between layers, so
//! a packet exists only as the current request and reply of one heap block.
//!
//! [`Device::poll`] is non-blocking: it handles at most one received packet, resumes
//! the VM when its wait is over and fires SAGDP's resend timer, then returns what the
//! device waits for next. An RTOS thread or a Tock yield loop calls it and sleeps on
//! the returned [`WaitingFor`]; [`Device::run`] is the blocking loop for simple ports.
//! While the VM waits, an incoming packet is handled first (zepto-os.rst,
//! "Asynchronous Returns"): the running program lives in its own heap block, so a new
//! packet can be received beside it, and a new program aborts the old one.
//!
//! Byte links carry packets in SADLP frames; that framing belongs to the port's
//! [`PacketBus`](crate::hal::PacketBus), so the pump sees whole packets.

use crate::error::{Error, HandlerOutcome};
use crate::hal::{BusId, Platform, WaitingFor, WakeReason};
use crate::heap::{Handle, Heap, HeapMem};
use crate::nonce_store::{key_id, BlankStart, NonceStore};
use crate::plugins::{self, Bodypart};
use crate::saccp::{ChecksumAes, Saccp, VmStatus};
use crate::sagdp::{PacketId, PacketStatus, Sagdp};
use crate::sasp::{self, Role, Sasp, SaspCipher};
use crate::vm::insn::ReplyFlags;
use crate::vm::{ExecFlags, Vm, VmHal, VmStep};
use aes::Aes128;

/// Everything a device port provides: the pump's facilities and the VM's.
pub trait DeviceHal: Platform + VmHal {}

impl<T: Platform + VmHal> DeviceHal for T {}

/// The execution layer the pump drives; implemented by every [`Vm`] level, so the
/// pump is not generic over the VM's stack sizes.
pub trait Execution {
    /// Starts the program in the request of `h` (see [`Vm::start`]).
    fn start(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        flags: ExecFlags,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<VmStep, Error>;
    /// Continues after a wait (see [`Vm::resume`]).
    fn resume(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
        wake: WakeReason,
    ) -> Result<VmStep, Error>;
    /// Aborts the running program (see [`Vm::abort`]).
    fn abort(&mut self, heap: &mut Heap<'_>, plugins: &mut [Bodypart<'_>]);
}

impl<const L: u8, const RS: usize, const ES: usize, const PT: usize> Execution
    for Vm<L, RS, ES, PT>
{
    fn start(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        flags: ExecFlags,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<VmStep, Error> {
        Vm::start(self, heap, h, flags, plugins, hal)
    }
    fn resume(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
        wake: WakeReason,
    ) -> Result<VmStep, Error> {
        Vm::resume(self, heap, h, plugins, hal, wake)
    }
    fn abort(&mut self, heap: &mut Heap<'_>, plugins: &mut [Bodypart<'_>]) {
        Vm::abort(self, heap, plugins)
    }
}

pub use crate::sasp::OLD_NONCE_ANSWER_GAP_MS;

/// Build-time parameters of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The bus packets arrive on and leave by.
    pub bus: BusId,
    /// Largest packet accepted from the bus, in bytes.
    pub mtu: u16,
    /// Storage address of the SASP nonce records.
    pub nonce_base: usize,
    /// Nonces covered by one storage write (see [`NonceStore::open`]).
    pub nonce_reserve: u32,
    /// How the nonce records start when storage holds none for the key (a new or
    /// wiped device); see `docs/security.md` for each port's choice.
    pub blank: BlankStart,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            bus: 0,
            mtu: 128,
            nonce_base: 0,
            nonce_reserve: crate::nonce_store::DEFAULT_RESERVE,
            blank: BlankStart::RandomHigh,
        }
    }
}

/// Counters of what the pump did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpStats {
    /// Packets taken from the bus.
    pub packets_in: u32,
    /// Packets sent to the bus.
    pub packets_out: u32,
    /// Programs started.
    pub programs: u32,
    /// Programs that ended with a VM exception.
    pub vm_exceptions: u32,
    /// Packets dropped by a layer (IGNORE_PACKET).
    pub ignored: u32,
    /// Packets dropped because a layer failed locally (heap, storage).
    pub errors: u32,
    /// Re-initialisations of the stack (FATAL_ERROR_REINIT).
    pub reinits: u32,
}

impl PumpStats {
    /// All counters zero.
    pub const ZERO: PumpStats = PumpStats {
        packets_in: 0,
        packets_out: 0,
        programs: 0,
        vm_exceptions: 0,
        ignored: 0,
        errors: 0,
        reinits: 0,
    };
}

/// One step of the pump, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A packet of this many bytes came from the bus.
    Received(u16),
    /// A layer returned this outcome for the packet going up.
    Up(Layer, HandlerOutcome),
    /// A program of this many bytes started.
    ProgramStarted(u16),
    /// The VM waits.
    VmWaiting(WaitingFor),
    /// The VM finished; `Some(code)` for a VM exception.
    VmDone(Option<u8>),
    /// A packet of this many bytes went to the bus.
    Sent(u16),
    /// A packet was dropped because a layer failed.
    Dropped(Error),
    /// The stack was re-initialised.
    Reinit,
}

/// Protocol layers, as named in [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Security.
    Sasp,
    /// Guaranteed delivery.
    Sagdp,
    /// Command and control.
    Saccp,
}

/// Events a [`Device`] keeps per [`Device::poll`] unless its `E` parameter says
/// otherwise (an MCU build that reads no log sets `E = 0` and saves the RAM).
pub const EVENT_LOG: usize = 12;

/// What goes down from SACCP: the VM's step (a reply, or a wait), or SACCP's own
/// error reply (in the request of the received packet's block) with its chain
/// position.
enum Down {
    Vm(VmStep),
    SaccpError(PacketStatus),
}

#[derive(Debug, Clone, Copy)]
struct VmWait {
    what: WaitingFor,
    since_ms: u64,
}

/// A Zepto device: heap, protocol layers, VM and plugins, driven by [`Device::poll`].
///
/// `N` is the heap arena size, `B` its handle count; the pump uses four handles (the
/// packet being received, the running program, SAGDP's last sent packet and SACCP's
/// old program) plus one per PARALLEL pseudo-thread. `E` is the number of [`Event`]s
/// kept per poll ([`Device::events`]); with 0 nothing is logged. `A` is the AES-128
/// of SACCP's checksum: the software `aes` crate, or, on a board with AES in
/// hardware, the same [`HardwareAes`](crate::hwaes::HardwareAes) as `C`.
// In declaration order (`repr(C)`): the fields the pump touches itself first, the
// large SASP state last, so that most field addresses are a short offset from the
// device's (on a Cortex-M0 a far field costs instructions per access and, kept in
// a register across calls, stack: 104 B of flash and 8 B of peak stack here).
#[repr(C)]
pub struct Device<
    't,
    'p,
    V: Execution,
    C: SaspCipher,
    const N: usize,
    const B: usize,
    const E: usize = EVENT_LOG,
    A: ChecksumAes = Aes128,
> {
    pump: Pump<'t, 'p, V, C, E, A>,
    mem: HeapMem<N, B>,
}

/// The device without its heap's memory: the pump's state and its code, which takes
/// the heap as a [`Heap`] (the same code whatever the heap's size).
#[repr(C)]
struct Pump<
    't,
    'p,
    V: Execution,
    C: SaspCipher,
    const E: usize = EVENT_LOG,
    A: ChecksumAes = Aes128,
> {
    rx: Handle,
    prog: Handle,
    n_events: u8,
    saccp: Saccp<A>,
    plugins: &'t mut [Bodypart<'p>],
    stats: PumpStats,
    /// The events of the last poll: the first `n_events` (with `E = 0` no bytes; a
    /// `heapless::Vec` would keep a `usize` for its length).
    events: [Event; E],
    vm: V,
    vm_wait: Option<VmWait>,
    /// When old nonces below the highest answered may be answered again.
    old_window_ms: u64,
    cfg: DeviceConfig,
    sagdp: Sagdp,
    sasp: Sasp<C>,
}

impl<
        't,
        'p,
        V: Execution,
        C: SaspCipher,
        const N: usize,
        const B: usize,
        const E: usize,
        A: ChecksumAes,
    > Device<'t, 'p, V, C, N, B, E, A>
{
    const HANDLES: () = assert!(B >= 4, "the pump needs at least four heap handles");
    const EVENTS: () = assert!(E <= 255, "a device keeps at most 255 events per poll");

    /// Creates a device: opens the nonce store for `key` in `hal`'s storage (blank
    /// storage starts as [`DeviceConfig::blank`] says), allocates the heap blocks and
    /// initialises the layers and the plugins. ([`Device::unkeyed`] and
    /// [`Device::start`] do the same where the device object is to stay: the
    /// result here is moved to the caller.)
    pub fn new<H: DeviceHal>(
        key: &[u8; 16],
        vm: V,
        plugins: &'t mut [Bodypart<'p>],
        cfg: DeviceConfig,
        hal: &mut H,
    ) -> Result<Self, Error> {
        let mut dev = Self::unkeyed(vm, plugins, cfg);
        dev.start(key, hal)?;
        Ok(dev)
    }

    /// A device that does nothing yet: it has no key, its nonce store is not
    /// opened and its heap has no blocks, so [`Device::poll`] receives no packet
    /// and sends none. [`Device::start`] makes it work, in place. (A `const fn`:
    /// every part is a constant but the VM, so the object is built where it is to
    /// stay, without a copy through a temporary. It may be inlined: where the VM
    /// and the configuration are constants, they are stored as such.)
    pub const fn unkeyed(vm: V, plugins: &'t mut [Bodypart<'p>], cfg: DeviceConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::HANDLES;
        #[allow(clippy::let_unit_value)]
        let () = Self::EVENTS;
        Self {
            mem: HeapMem::new(),
            pump: Pump {
                rx: Handle::NONE,
                prog: Handle::NONE,
                sasp: Sasp::unkeyed(Role::Device),
                sagdp: Sagdp::slave(),
                saccp: Saccp::with_aes(),
                vm,
                plugins,
                vm_wait: None,
                old_window_ms: 0,
                cfg,
                stats: PumpStats::ZERO,
                events: [Event::Reinit; E],
                n_events: 0,
            },
        }
    }

    /// Starts the device in place: takes `key`, initialises the plugins, opens the
    /// nonce store for the key in `hal`'s storage (blank storage starts as
    /// [`DeviceConfig::blank`] says) and sets up the heap and the layers. On an
    /// error the device accepts no packet and sends none, also if it had started
    /// before (it may still take packets from the bus and drop them): the nonce
    /// store, closed first, opens last, so a device never runs over another key's
    /// store, nor without its plugins.
    #[inline(never)]
    pub fn start<H: DeviceHal>(&mut self, key: &[u8; 16], hal: &mut H) -> Result<(), Error> {
        let pump = &mut self.pump;
        let cfg = &pump.cfg;
        pump.sasp.set_key(key);
        plugins::init_all(pump.plugins, hal)?;
        pump.sasp
            .open_nonces(hal, cfg.nonce_base, cfg.nonce_reserve, cfg.blank)?;
        pump.reset_layers(&mut self.mem.heap())
    }

    /// Persists the exact nonce state (before a clean shutdown or a suspend that loses
    /// RAM), so the peer needs no resynchronisation afterwards.
    pub fn checkpoint<H: DeviceHal>(&mut self, hal: &mut H) -> Result<(), Error> {
        self.pump.sasp.checkpoint(hal)
    }

    /// What the pump did so far.
    pub const fn stats(&self) -> &PumpStats {
        &self.pump.stats
    }

    /// The nonce state (e.g. [`NonceStore::started_blank`] for a start-up message;
    /// NFS and NLW, to checkpoint only when they moved).
    pub const fn nonces(&self) -> &NonceStore {
        self.pump.sasp.nonces()
    }

    /// SASP counters (authentication failures, resyncs ...).
    pub const fn sasp_stats(&self) -> &sasp::SaspStats {
        self.pump.sasp.stats()
    }

    /// The events of the last [`Device::poll`].
    pub fn events(&self) -> &[Event] {
        self.pump
            .events
            .get(..usize::from(self.pump.n_events))
            .unwrap_or(&[])
    }

    /// The heap's memory (for diagnostics).
    pub const fn heap(&self) -> &HeapMem<N, B> {
        &self.mem
    }

    /// True while a program waits (SLEEP, MCUSLEEP or a waiting plugin).
    pub const fn vm_waiting(&self) -> bool {
        self.pump.vm_wait.is_some()
    }

    /// Does one round of work and returns what to wait for before the next call: a
    /// received packet is handled (at most one per call), a VM whose wait is over is
    /// resumed, SAGDP's resend timer fires. Errors of single packets are counted and
    /// the packet dropped; they never stop the pump.
    pub fn poll<H: DeviceHal>(&mut self, hal: &mut H) -> WaitingFor {
        self.pump.poll(&mut self.mem.heap(), hal)
    }

    /// Runs the pump forever: poll, then wait for what it asks (the port's
    /// [`Waiter`](crate::hal::Waiter) returns early when a packet arrives).
    pub fn run<H: DeviceHal>(&mut self, hal: &mut H) -> ! {
        loop {
            // The device's address, opaque to the optimiser once per round: without
            // it LLVM hoists the addresses of the object's fields out of this endless
            // loop and keeps them in this frame, under every path of the pump (40 B
            // of peak stack on the micro:bit).
            let dev = core::hint::black_box(&mut *self);
            let w = dev.poll(hal);
            let _ = hal.wait_for(&w);
        }
    }
}

impl<'t, 'p, V: Execution, C: SaspCipher, const E: usize, A: ChecksumAes> Pump<'t, 'p, V, C, E, A> {
    fn log(&mut self, e: Event) {
        if E > 0 {
            if let Some(slot) = self.events.get_mut(usize::from(self.n_events)) {
                *slot = e;
                self.n_events = self.n_events.saturating_add(1);
            }
        }
    }

    /// See [`Device::poll`].
    fn poll<H: DeviceHal>(&mut self, heap: &mut Heap<'_>, hal: &mut H) -> WaitingFor {
        self.n_events = 0;
        hal.feed();
        let mut got = self.receive(heap, hal);
        if got == Err(Error::OutOfMemory) && self.vm_wait.is_some() {
            // A waiting program (with its reply so far) leaves no room for the next
            // packet, which is likely a new command anyway: the client is always
            // right, so the program goes and the packet comes in.
            self.vm.abort(heap, self.plugins);
            self.vm_wait = None;
            let _ = heap.set_request(self.prog, &[]);
            self.log(Event::Dropped(Error::OutOfMemory));
            got = self.receive(heap, hal);
        }
        match got {
            Ok(0) => {}
            Ok(n) => {
                crate::count(&mut self.stats.packets_in);
                self.log(Event::Received(n));
                if let Err(e) = self.packet_up(heap, hal) {
                    self.fail(heap, e);
                }
                return self.next_wait(hal);
            }
            Err(e) => self.fail(heap, e),
        }
        // The wait is read where it is (a copy would take its bytes in this frame).
        let wake = match &self.vm_wait {
            Some(w) => Self::wait_over(w, hal),
            None => None,
        };
        if let Some(wake) = wake {
            self.vm_wait = None;
            let step = self.vm.resume(heap, self.prog, self.plugins, hal, wake);
            if let Err(e) = step.and_then(|s| self.after_vm(heap, Down::Vm(s), hal)) {
                self.fail(heap, e);
            }
        }
        if self.sagdp.next_timeout_ms(hal.now_ms()) == Some(0) {
            if let Err(e) = self.resend(heap, hal) {
                self.fail(heap, e);
            }
        }
        self.next_wait(hal)
    }

    /// Receives a pending packet (if any) straight into the `rx` block; 0 if none.
    /// (Its length as a `u16`, at most the MTU: the result fits a register.)
    fn receive<H: DeviceHal>(&mut self, heap: &mut Heap<'_>, hal: &mut H) -> Result<u16, Error> {
        let bus = self.cfg.bus;
        let mtu = usize::from(self.cfg.mtu);
        let room = hal.rx_room(bus, mtu).max(mtu);
        let n = heap.fill_request(self.rx, room, |buf| Ok(hal.receive(bus, buf)?.unwrap_or(0)))?;
        if n > mtu {
            heap.set_request(self.rx, &[])?;
            return Err(Error::BufferTooSmall);
        }
        Ok(n as u16)
    }

    /// A packet could not be handled: count it, drop it and free what it held (the
    /// block of a program that still waits is kept), so one bad packet can never
    /// leave the heap full for the next ones.
    fn fail(&mut self, heap: &mut Heap<'_>, e: Error) {
        crate::count(&mut self.stats.errors);
        self.log(Event::Dropped(e));
        if e == Error::InvalidState {
            self.reinit(heap);
            return;
        }
        let _ = heap.set_request(self.rx, &[]);
        if self.vm_wait.is_none() {
            let _ = heap.set_request(self.prog, &[]);
        }
    }

    /// The wait for the next call: the VM's remaining wait and SAGDP's timer, any of
    /// them (plus, always, an incoming packet). Out of line: its waits are not in
    /// the frame of [`Device::run`], above every path of the pump.
    #[inline(never)]
    fn next_wait<H: DeviceHal>(&self, hal: &H) -> WaitingFor {
        // As `WaitingFor::default().merge(&vm).merge(&WaitingFor::time(t))`, without
        // the general merge: the VM's pins with their values (none beyond them), and
        // the earlier of the two times.
        let now = hal.now_ms();
        let mut w = WaitingFor::default();
        let mut end = None;
        if let Some(v) = &self.vm_wait {
            w.pins_to_wait = v.what.pins_to_wait;
            // The four bytes of pins (`MAX_PINS` 32) as one word.
            let (m, val) = (v.what.pins_to_wait, v.what.pin_values_to_wait);
            w.pin_values_to_wait = (u32::from_le_bytes(val) & u32::from_le_bytes(m)).to_le_bytes();
            if let Some(t) = v.what.timeout_ms {
                end = Some(v.since_ms.saturating_add(u64::from(t)).saturating_sub(now));
            }
        }
        if let Some(t) = self.sagdp.next_timeout_ms(now) {
            end = Some(end.map_or(t, |e: u64| e.min(t)));
        }
        w.timeout_ms = end.map(|e| e.min(u64::from(u32::MAX)) as u32);
        w
    }

    /// Whether a VM wait has ended, and why. (Out of line, as [`Pump::next_wait`].)
    #[inline(never)]
    fn wait_over<H: DeviceHal>(w: &VmWait, hal: &mut H) -> Option<WakeReason> {
        for (pin, value) in w.what.pins() {
            if hal.read_pin(pin).ok() == Some(value) {
                return Some(WakeReason::Pin(pin));
            }
        }
        match w.what.timeout_ms {
            Some(t) if hal.now_ms() >= w.since_ms.saturating_add(u64::from(t)) => {
                Some(WakeReason::Timeout)
            }
            _ => None,
        }
    }

    /// Re-initialises everything but SASP (whose nonces must survive) and the plugins.
    fn reinit(&mut self, heap: &mut Heap<'_>) {
        crate::count(&mut self.stats.reinits);
        self.log(Event::Reinit);
        // A freshly reset heap always has four free handles (`B >= 4` is checked at
        // build time) and empty blocks take no bytes, so this cannot fail.
        let _ = self.reset_layers(heap);
    }

    /// Aborts the program, empties the heap and sets up the pump's blocks, SAGDP
    /// and SACCP afresh.
    fn reset_layers(&mut self, heap: &mut Heap<'_>) -> Result<(), Error> {
        self.vm.abort(heap, self.plugins);
        self.vm_wait = None;
        heap.reset();
        // The blocks SAGDP and SACCP held are free now: each `init` resets its layer
        // in place and allocates a new block.
        self.sagdp.heap_was_reset();
        self.saccp.heap_was_reset();
        self.rx = heap.alloc()?;
        self.prog = heap.alloc()?;
        self.sagdp.init(heap)?;
        self.saccp.init(heap)
    }

    /// The reply of `h` becomes its request (the next layer's); returns its length.
    fn convert(&mut self, heap: &mut Heap<'_>, h: Handle) -> Result<usize, Error> {
        convert(heap, h).map(usize::from)
    }

    /// The packet in the request of `rx`, up through SASP, SAGDP and SACCP into the VM.
    fn packet_up<H: DeviceHal>(&mut self, heap: &mut Heap<'_>, hal: &mut H) -> Result<(), Error> {
        let rx = self.rx;
        let now = hal.now_ms();
        self.sasp.open_old_nonce_window(now >= self.old_window_ms);
        let out = self.sasp.receive(heap, rx, hal)?;
        self.log(Event::Up(Layer::Sasp, out));
        if out == HandlerOutcome::ReplyDown {
            self.old_window_ms = now.saturating_add(OLD_NONCE_ANSWER_GAP_MS);
        }
        match out {
            HandlerOutcome::Pass => {
                // Authentic and fresh: replies go where this packet came from.
                hal.accept_source(self.cfg.bus);
                self.convert(heap, rx)?;
            }
            HandlerOutcome::ReplyDown => {
                // An "old nonce" message, already encrypted: straight back to the
                // sender, which (maybe a replay) does not become the peer.
                let len = self.convert(heap, rx)?;
                return self.transmit(heap, hal, rx, len, true);
            }
            _ => return self.ignored(),
        }
        let pid = PacketId::from_bytes(self.sasp.last_received_pid().ok_or(Error::InvalidState)?);
        let now = hal.now_ms();
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        let out = self.sagdp.receive(heap, rx, pid, now, &mut ids)?;
        self.log(Event::Up(Layer::Sagdp, out));
        match out {
            HandlerOutcome::Pass => {
                self.convert(heap, rx)?;
            }
            HandlerOutcome::ReplyDown => {
                return self.lsp_out(heap, hal);
            }
            HandlerOutcome::FatalErrorReinit => {
                let sent = self.lsp_out(heap, hal);
                self.reinit(heap);
                return sent;
            }
            _ => return self.ignored(),
        }
        let status = self.sagdp.received_status().ok_or(Error::InvalidState)?;
        let out = self.saccp.receive(heap, rx, status)?;
        self.log(Event::Up(Layer::Saccp, out));
        match out {
            HandlerOutcome::Pass => {
                self.convert(heap, rx)?;
            }
            HandlerOutcome::ReplyDown => {
                let st = self.saccp.error_reply_status();
                return self.after_vm(heap, Down::SaccpError(st), hal);
            }
            _ => return self.ignored(),
        }
        let f = self.saccp.exec_flags().ok_or(Error::InvalidState)?;
        // The new program gets its own block; the one it replaces (if it still runs,
        // "Overriding Command") is aborted by `start`.
        core::mem::swap(&mut self.rx, &mut self.prog);
        heap.clear_reply(self.rx)?;
        self.vm_wait = None;
        crate::count(&mut self.stats.programs);
        let len = heap.request_len(self.prog)?;
        self.log(Event::ProgramStarted(len as u16));
        let flags = ExecFlags {
            is_first: f.is_first,
            is_last: f.is_last,
        };
        let step = self.vm.start(heap, self.prog, flags, self.plugins, hal)?;
        self.after_vm(heap, Down::Vm(step), hal)
    }

    fn ignored(&mut self) -> Result<(), Error> {
        crate::count(&mut self.stats.ignored);
        Ok(())
    }

    /// Acts on what the VM reported (remember a wait, or send the reply down), or
    /// sends SACCP's error reply down: SAGDP's and SASP's send in one place.
    fn after_vm<H: DeviceHal>(
        &mut self,
        heap: &mut Heap<'_>,
        down: Down,
        hal: &mut H,
    ) -> Result<(), Error> {
        let (h, saccp_len, chain, pad) = match down {
            Down::SaccpError(status) => {
                let rx = self.rx;
                (rx, self.convert(heap, rx)?, status, None)
            }
            Down::Vm(VmStep::Waiting(what)) => {
                self.log(Event::VmWaiting(what));
                self.vm_wait = Some(VmWait {
                    what,
                    since_ms: hal.now_ms(),
                });
                return Ok(());
            }
            Down::Vm(VmStep::Done {
                flags,
                padding_to,
                exception,
            }) => {
                self.log(Event::VmDone(exception.map(|e| e.code as u8)));
                let p = self.prog;
                let vm_len = self.convert(heap, p)?;
                let status = match exception {
                    Some(e) => {
                        crate::count(&mut self.stats.vm_exceptions);
                        VmStatus::Exception {
                            truncated: e.truncated,
                        }
                    }
                    None => VmStatus::Ok { truncated: false },
                };
                self.saccp.send(heap, p, status)?;
                let saccp_len = self.convert(heap, p)?;
                let chain = match flags {
                    ReplyFlags::IsLast => PacketStatus::Terminating,
                    ReplyFlags::None => PacketStatus::Intermediate,
                    ReplyFlags::IsFirst => PacketStatus::First,
                };
                // EXIT's FORCED-PADDING-TO counts the reply buffer; SASP pads payloads,
                // which also hold the SACCP and SAGDP headers.
                let pad = padding_to.map(|t| (usize::from(t), vm_len));
                (p, saccp_len, chain, pad)
            }
        };
        self.sagdp_out(heap, hal, h, saccp_len, chain, pad)
    }

    /// SACCP's packet (`saccp_len` bytes) in the request of `h`, down through SAGDP
    /// and SASP to the bus.
    // Inlined into its callers: one frame less on the send path, the deepest stack
    // of a device (SASP's key is expanded below it).
    #[inline(always)]
    fn sagdp_out<H: DeviceHal>(
        &mut self,
        heap: &mut Heap<'_>,
        hal: &mut H,
        h: Handle,
        saccp_len: usize,
        status: PacketStatus,
        pad: Option<(usize, usize)>,
    ) -> Result<(), Error> {
        let now = hal.now_ms();
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        let out = self.sagdp.send(heap, h, status, now, &mut ids)?;
        let payload_len = self.convert(heap, h)?;
        let pad_to = pad.map(|(to, vm_len)| {
            to.saturating_add(payload_len.saturating_sub(vm_len.min(saccp_len)))
        });
        let sent = self.sasp_out(heap, hal, h, pad_to);
        if out == HandlerOutcome::FatalErrorReinit {
            self.reinit(heap);
        }
        sent
    }

    /// SAGDP's reply in the `rx` block (a resent packet or an Error Message),
    /// encrypted and sent. (Out of line: one call for its three callers.)
    #[inline(never)]
    fn lsp_out<H: DeviceHal>(&mut self, heap: &mut Heap<'_>, hal: &mut H) -> Result<(), Error> {
        let rx = self.rx;
        self.convert(heap, rx)?;
        self.sasp_out(heap, hal, rx, None)
    }

    /// SAGDP's packet in the request of `h`, encrypted and sent.
    fn sasp_out<H: DeviceHal>(
        &mut self,
        heap: &mut Heap<'_>,
        hal: &mut H,
        h: Handle,
        pad_to: Option<usize>,
    ) -> Result<(), Error> {
        self.sasp.send_announced(heap, h, hal, pad_to)?;
        let len = self.convert(heap, h)?;
        self.transmit(heap, hal, h, len, false)
    }

    /// Sends the request of `h` (`len` bytes) to the bus (to the peer, or with
    /// `to_source` to the
    /// sender of the packet received last), with the room the bus asks for after it
    /// in the same heap block (so a byte link frames the packet in place).
    fn transmit<H: DeviceHal>(
        &mut self,
        heap: &mut Heap<'_>,
        hal: &mut H,
        h: Handle,
        len: usize,
        to_source: bool,
    ) -> Result<(), Error> {
        let bus = self.cfg.bus;
        let room = hal.tx_room(bus, len);
        let buf = heap.request_and_room_mut(h, room)?;
        if to_source {
            hal.reply_in_place(bus, buf, len)?;
        } else {
            hal.send_in_place(bus, buf, len)?;
        }
        crate::count(&mut self.stats.packets_out);
        self.log(Event::Sent(len as u16));
        heap.set_request(h, &[])
    }

    /// SAGDP's resend timer fired: the last sent packet goes out again.
    fn resend<H: DeviceHal>(&mut self, heap: &mut Heap<'_>, hal: &mut H) -> Result<(), Error> {
        let now = hal.now_ms();
        let rx = self.rx;
        let sasp = &mut self.sasp;
        let mut ids = || sasp.reserve_packet_id(hal).map(PacketId::from_bytes);
        match self.sagdp.on_timeout(heap, rx, now, &mut ids)? {
            HandlerOutcome::ReplyDown => self.lsp_out(heap, hal),
            _ => Ok(()),
        }
    }
}

/// [`Heap::convert_reply_to_request`] with the length as a `u16` (a block's length
/// is one): out of line, and its result fits a register, so each of the pump's calls
/// is a few instructions.
#[inline(never)]
fn convert(heap: &mut Heap<'_>, h: Handle) -> Result<u16, Error> {
    heap.convert_reply_to_request(h).map(|n| n as u16)
}

/// Provisions fresh nonce records (NFS = NLW = 0) for a new `key` in `storage` at
/// `cfg.nonce_base`, when a device gets that key. Refused with [`Error::KeyInUse`]
/// if storage holds records for this key already.
pub fn provision_new_key<C: SaspCipher, S: crate::hal::Storage + ?Sized>(
    storage: &mut S,
    cfg: &DeviceConfig,
    key: &[u8; 16],
) -> Result<(), Error> {
    NonceStore::provision(storage, cfg.nonce_base, key_id::<C>(key)?, 0, 0)
}
