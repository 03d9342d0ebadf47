//! The Zepto HAL on Tock system calls (libtock-rs):
//!
//! * time: the alarm driver's tick counter, extended to 64 bits;
//! * packets: SADLP frames on the console, received into and sent from the
//!   pump's heap blocks (the console's allow buffers point into the Zepto heap);
//!   each sent frame is one console write, never split by other output;
//! * storage: the SASP nonce records in RAM, written through to the key-value
//!   driver when the board has one ([`NonceBacking`]);
//! * pins: the GPIO driver when the board has one, otherwise unsupported;
//! * randomness: the RNG driver.

use core::cell::Cell;
use libtock::alarm::{Alarm, Milliseconds};
use libtock::console::Console;
use libtock::key_value::KeyValue;
use libtock::rng::Rng;
use libtock::runtime::TockSyscalls;
use libtock_platform::{syscall_class, ErrorCode, RawSyscalls, Syscalls, YieldNoWaitReturn};
use zepto_kernel::hal::{
    BusId, Clock, McuSleep, PacketBus, Pins, Random, Storage, Transceiver, Waiter, WaitingFor,
    WakeReason, Watchdog,
};
use zepto_kernel::{nonce_store, sadlp, Error};

/// Largest packet on the console link.
pub const MTU: usize = 128;

/// Console driver: read command, its read-write allow and subscribe numbers.
pub const CONSOLE: u32 = 0x1;
pub const CONSOLE_READ: u32 = 2;
pub const CONSOLE_ALLOW_READ: u32 = 1;
pub const CONSOLE_SUB_READ: u32 = 2;

/// Alarm driver: set-relative command.
pub const ALARM: u32 = 0x0;
const ALARM_SET_RELATIVE: u32 = 5;

/// Most ticks added to the clock at a time (`TICK_STEP * 1000 <= 2^31`).
const TICK_STEP: u32 = 2_000_000;

/// Longest time a frame may take to arrive once its first byte is in (a
/// 134-byte frame takes 140 ms at 9600 baud).
const FRAME_MS: u32 = 200;

const GPIO: u32 = 0x4;
const GPIO_ENABLE_OUTPUT: u32 = 1;
const GPIO_SET: u32 = 2;
const GPIO_CLEAR: u32 = 3;
const GPIO_ENABLE_INPUT: u32 = 5;
const GPIO_READ: u32 = 6;
const GPIO_COUNT: u32 = 10;

/// Key of the nonce records in the key-value store.
const NONCE_KEY: &[u8] = b"zepto.nonces";
/// Storage write granularity given to the nonce store.
const GRANULARITY: usize = 4;
/// Bytes of nonce records.
pub const NONCE_BYTES: usize = nonce_store::storage_len(GRANULARITY);

/// State shared with the upcalls of the console read and of the alarm, and the
/// one-byte buffer a pending console read writes to while no heap block is
/// allowed (see [`TockHal`]'s `PacketBus::receive`).
pub struct Signals {
    /// (status, count) of the completed console read.
    pub read: Cell<Option<(u32, u32)>>,
    /// The alarm fired.
    pub alarm: Cell<Option<(u32, u32)>>,
    park: Cell<u8>,
}

impl Signals {
    pub const fn new() -> Self {
        Self {
            read: Cell::new(None),
            alarm: Cell::new(None),
            park: Cell::new(0),
        }
    }
}

/// Where the pending one-byte console read writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// No read is pending.
    Idle,
    /// The park byte of [`Signals`].
    Park,
    /// Byte `i` of the heap block being received.
    Heap(usize),
}

/// Read-write allow of `len` bytes at `ptr` as the console's read buffer,
/// replacing the previous one.
///
/// # Safety
/// The bytes must stay valid, and not be accessed through references that
/// assume they do not change, until another buffer replaces them.
unsafe fn allow_read(ptr: *mut u8, len: usize) -> Result<(), ErrorCode> {
    // SAFETY: Read-Write Allow per TRD 104 (driver, buffer number, address,
    // length); the caller keeps the buffer valid while it is allowed.
    let [r0, r1, _, _] = unsafe {
        TockSyscalls::syscall4::<{ syscall_class::ALLOW_RW }>([
            CONSOLE.into(),
            CONSOLE_ALLOW_READ.into(),
            ptr.into(),
            len.into(),
        ])
    };
    if r0.as_u32() == 2 {
        // Failure with 2 u32: r1 is the error code.
        Err(ErrorCode::try_from(r1.as_u32()).unwrap_or(ErrorCode::Fail))
    } else {
        Ok(())
    }
}

/// What reading the nonce records from the key-value store found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvLoad {
    /// Records read.
    Loaded,
    /// No record this app can read: none yet, or one it may not read (the
    /// driver answers NOSUPPORT for both).
    Missing,
    /// The driver failed otherwise.
    Failed(ErrorCode),
}

/// Where the nonce records live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceBacking {
    /// The key-value driver (persistent).
    KeyValue,
    /// RAM only: blank at every start (random high start, see README).
    Ram,
}

/// Counters of the console link.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    pub frames_in: u32,
    pub frames_out: u32,
    pub dropped: u32,
}

/// The HAL. Packets are received and sent inside the pump's heap blocks: the
/// console's read buffer is the byte of the receiving heap block that comes
/// next, and the console writes the SADLP frame straight from the heap block
/// that holds the reply (see `PacketBus` below).
pub struct TockHal<'s> {
    /// Alarm frequency in Hz (1..=2^31).
    hz: u32,
    last_ticks: Cell<u32>,
    /// The clock: milliseconds, and the remainder of ticks times 1000
    /// divided by `hz` (`< hz`).
    ms: Cell<u64>,
    rem: Cell<u32>,
    sig: &'s Signals,
    target: Target,
    /// Milliseconds the next `PacketBus::receive` may wait for a frame.
    pub sleep_ms: u32,
    nonces: [u8; NONCE_BYTES],
    pub backing: NonceBacking,
    /// The next flush creates the record (key-value `add`, which never
    /// replaces a record this app could not read) instead of replacing it.
    pub create: bool,
    /// Error of the last failed key-value write.
    pub kv_error: Option<ErrorCode>,
    gpio_pins: u32,
    pub stats: LinkStats,
}

impl<'s> TockHal<'s> {
    /// Probes the drivers. Fails if the alarm (time) is missing.
    pub fn new(sig: &'s Signals) -> Result<Self, ErrorCode> {
        let hz = Alarm::get_frequency()?.0.clamp(1, 1 << 31);
        let now = Alarm::get_ticks()?;
        let gpio_pins = TockSyscalls::command(GPIO, GPIO_COUNT, 0, 0)
            .to_result::<u32, ErrorCode>()
            .unwrap_or(0);
        let backing = if KeyValue::exists() {
            NonceBacking::KeyValue
        } else {
            NonceBacking::Ram
        };
        Ok(Self {
            hz,
            last_ticks: Cell::new(now),
            ms: Cell::new(0),
            rem: Cell::new(0),
            sig,
            target: Target::Idle,
            sleep_ms: 0,
            nonces: [0xff; NONCE_BYTES],
            backing,
            create: false,
            kv_error: None,
            gpio_pins,
            stats: LinkStats::default(),
        })
    }

    /// Number of GPIO pins (0: the board has no GPIO driver).
    pub fn gpio_pins(&self) -> u32 {
        self.gpio_pins
    }

    /// Loads the nonce records from the key-value store.
    pub fn load_nonces(&mut self) -> KvLoad {
        match KeyValue::get(NONCE_KEY, &mut self.nonces) {
            Ok(n) if n as usize == NONCE_BYTES => KvLoad::Loaded,
            Ok(_) => KvLoad::Failed(ErrorCode::Size),
            Err(ErrorCode::NoSupport) => KvLoad::Missing,
            Err(e) => KvLoad::Failed(e),
        }
    }

    /// Reads the stored records back and compares them with RAM: a record
    /// this app wrote but cannot read would be created again at the next
    /// start (nonce reuse).
    pub fn verify_nonces(&self) -> Result<(), ErrorCode> {
        let mut back = [0u8; NONCE_BYTES];
        match KeyValue::get(NONCE_KEY, &mut back)? {
            n if n as usize == NONCE_BYTES && back == self.nonces => Ok(()),
            _ => Err(ErrorCode::NoSupport),
        }
    }

    /// Sets the alarm `ms` from now (replacing the previous one).
    fn arm_alarm(&self, ms: u32) -> Result<(), ErrorCode> {
        self.sig.alarm.set(None);
        TockSyscalls::command(ALARM, ALARM_SET_RELATIVE, self.ms_to_ticks(ms), 0)
            .to_result::<u32, ErrorCode>()
            .map(|_| ())
    }

    /// Makes sure a one-byte console read is pending into `want` (a read that
    /// is already pending is left where it is: the UART cannot cancel it).
    fn read_into(&mut self, want: Target, heap: &mut [u8]) -> Result<(), Error> {
        if self.target != Target::Idle {
            return Ok(());
        }
        let ptr = match want {
            Target::Heap(i) => heap.get_mut(i).ok_or(Error::BufferTooSmall)? as *mut u8,
            _ => self.sig.park.as_ptr(),
        };
        // SAFETY: a heap byte is allowed only while `receive` holds the heap
        // block, and `leave` points the read at the park byte before it
        // returns; the park byte lives in `Signals`, which outlives the HAL.
        unsafe { allow_read(ptr, 1) }.map_err(|_| Error::Bus)?;
        self.sig.read.set(None);
        TockSyscalls::command(CONSOLE, CONSOLE_READ, 1, 0)
            .to_result::<(), ErrorCode>()
            .map_err(|_| Error::Bus)?;
        self.target = if matches!(want, Target::Heap(_)) {
            want
        } else {
            Target::Park
        };
        Ok(())
    }

    /// Before `receive` returns: a read still pending into the heap block is
    /// pointed at the park byte. Returns false if the read completed meanwhile
    /// (its byte is in the heap block and must be handled).
    fn leave(&mut self) -> bool {
        if !matches!(self.target, Target::Heap(_)) {
            return true;
        }
        if let YieldNoWaitReturn::Upcall = TockSyscalls::yield_no_wait() {
            if self.sig.read.get().is_some() {
                return false;
            }
        }
        // A frame's first byte after an idle line is its leading delimiter; a
        // read that completes between the check above and the allow below is
        // then still seen correctly.
        self.sig.park.set(0);
        // SAFETY: see `read_into`.
        if unsafe { allow_read(self.sig.park.as_ptr(), 1) }.is_err() {
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
        }
        self.target = Target::Park;
        true
    }

    /// Milliseconds to alarm ticks, `ms * hz / 1000` rounded down (at least
    /// 1, at most `u32::MAX`), with 32-bit arithmetic only: with
    /// `hz = 1000 a + b` and `ms = 1000 q + r`, it is
    /// `ms a + q b + r b / 1000` (each term at most the result, `r b < 10^6`).
    pub fn ms_to_ticks(&self, ms: u32) -> u32 {
        let (a, b) = (self.hz / 1000, self.hz % 1000);
        let (q, r) = (ms / 1000, ms % 1000);
        ms.saturating_mul(a)
            .saturating_add(q.saturating_mul(b))
            .saturating_add(r * b / 1000)
            .max(1)
    }
}

impl Clock for TockHal<'_> {
    /// Milliseconds since start, `ticks * 1000 / hz` rounded down: the ticks
    /// since the last call are added in steps whose product with 1000 fits
    /// 32 bits, carrying the remainder, so only 32-bit divisions are needed
    /// (the 64-bit division linked 1.7 KB of library code).
    fn now_ms(&self) -> u64 {
        // The 32-bit tick counter wraps (e.g. after 429 s at 10 MHz); the app
        // reads the clock far more often than that.
        let now = Alarm::get_ticks().unwrap_or(self.last_ticks.get());
        let mut d = now.wrapping_sub(self.last_ticks.get());
        self.last_ticks.set(now);
        let (mut ms, mut rem) = (self.ms.get(), self.rem.get());
        while d > 0 {
            let step = d.min(TICK_STEP);
            d -= step;
            // rem < hz <= 2^31 and step * 1000 <= 2^31: no overflow.
            let x = rem + step * 1000;
            ms = ms.wrapping_add(u64::from(x / self.hz));
            rem = x % self.hz;
        }
        self.ms.set(ms);
        self.rem.set(rem);
        ms
    }
}

impl Waiter for TockHal<'_> {
    /// Only time is waited for here (the app's own loop waits for packets,
    /// IPC and time together).
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        let ms = what.timeout_ms.unwrap_or(100).min(1000);
        let _ = Alarm::sleep_for(Milliseconds(ms));
        WakeReason::Timeout
    }
}

impl PacketBus for TockHal<'_> {
    /// Receives one SADLP frame into `buf` (the pump's receiving heap block, as
    /// large as [`PacketBus::rx_room`]) and unframes it there. The console
    /// writes each received byte straight into the heap: a one-byte read whose
    /// buffer is the block's next byte. Waits at most `sleep_ms` for a frame to
    /// begin (or until another upcall, e.g. IPC, arrives); once a byte has
    /// arrived it reads on until the frame's closing delimiter, at most
    /// `FRAME_MS`. Before returning, a read still pending is pointed at the
    /// park byte; the byte that lands there (normally the next frame's leading
    /// delimiter) is the only one ever copied into the heap.
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let cap = buf.len();
        let mut len = 0usize;
        let mut started = false;
        let mut oversize = false;
        let budget = core::mem::take(&mut self.sleep_ms);
        if budget > 0 {
            self.arm_alarm(budget).map_err(|_| Error::Bus)?;
        }
        loop {
            let want = if len < cap && !oversize {
                Target::Heap(len)
            } else {
                Target::Park
            };
            self.read_into(want, buf)?;
            if self.sig.read.get().is_none() {
                if !started && budget == 0 {
                    // Only look: take what is already there.
                    let _ = TockSyscalls::yield_no_wait();
                } else {
                    TockSyscalls::yield_wait();
                }
            }
            if let Some((status, count)) = self.sig.read.take() {
                let at = core::mem::replace(&mut self.target, Target::Idle);
                if status != 0 || count == 0 {
                    continue;
                }
                let byte = match at {
                    Target::Heap(i) => {
                        let p = buf.get(i).ok_or(Error::BufferTooSmall)? as *const u8;
                        // SAFETY: `p` is in `buf`; the kernel wrote it before
                        // queueing the upcall that was just handled.
                        unsafe { core::ptr::read_volatile(p) }
                    }
                    _ => self.sig.park.get(),
                };
                if !started {
                    started = true;
                    self.arm_alarm(FRAME_MS).map_err(|_| Error::Bus)?;
                }
                if byte == sadlp::DELIMITER {
                    if len > 0 && !oversize {
                        let frame = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
                        match sadlp::decode_in_place(frame) {
                            Ok(n) => {
                                self.stats.frames_in = self.stats.frames_in.wrapping_add(1);
                                return Ok(Some(n));
                            }
                            Err(_) => self.stats.dropped = self.stats.dropped.wrapping_add(1),
                        }
                    } else if oversize {
                        self.stats.dropped = self.stats.dropped.wrapping_add(1);
                    }
                    len = 0;
                    oversize = false;
                } else if matches!(at, Target::Heap(_)) {
                    len += 1;
                } else if let Some(slot) = buf.get_mut(len).filter(|_| !oversize) {
                    // The byte that ended an idle line and is not a delimiter.
                    *slot = byte;
                    len += 1;
                } else {
                    oversize = true;
                }
                continue;
            }
            let timed_out = self.sig.alarm.take().is_some() || (!started && budget == 0);
            if started && !timed_out {
                // Another upcall (IPC) during a frame: finish the frame first.
                continue;
            }
            if started && len > 0 {
                // The frame stopped arriving.
                self.stats.dropped = self.stats.dropped.wrapping_add(1);
            }
            if self.leave() {
                return Ok(None);
            }
            started = true;
        }
    }

    fn send(&mut self, bus: BusId, packet: &[u8]) -> Result<(), Error> {
        // The pump sends through `send_in_place`; this path frames on the stack.
        let mut tmp = [0u8; sadlp::encoded_len(MTU)];
        let body = tmp.get_mut(..packet.len()).ok_or(Error::BufferTooSmall)?;
        body.copy_from_slice(packet);
        self.send_in_place(bus, &mut tmp, packet.len())
    }

    fn rx_room(&self, _bus: BusId, mtu: usize) -> usize {
        sadlp::decoder_buffer_len(mtu)
    }

    fn tx_room(&self, _bus: BusId, len: usize) -> usize {
        sadlp::encoded_len(len) - len
    }

    /// Frames the packet in its heap block and lets the console write the
    /// frame from there (one write, never interleaved with other output).
    fn send_in_place(&mut self, _bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        let n = sadlp::encode_in_place(buf, len)?;
        Console::write(buf.get(..n).ok_or(Error::BufferTooSmall)?).map_err(|_| Error::Bus)?;
        self.stats.frames_out = self.stats.frames_out.wrapping_add(1);
        Ok(())
    }
}

impl Transceiver for TockHal<'_> {
    /// The console is always on.
    fn set_receiver(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
    fn set_transmitter(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
}

impl McuSleep for TockHal<'_> {
    /// Tock puts the MCU to sleep whenever no process runs; this process just
    /// waits (the VM's receiver-off rule still holds: nothing is read meanwhile).
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error> {
        Alarm::sleep_for(Milliseconds(ms)).map_err(|_| Error::Unsupported)
    }
}

impl Storage for TockHal<'_> {
    fn size(&self) -> usize {
        NONCE_BYTES
    }
    fn write_granularity(&self) -> usize {
        GRANULARITY
    }
    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        let end = addr.checked_add(buf.len()).ok_or(Error::Storage)?;
        buf.copy_from_slice(self.nonces.get(addr..end).ok_or(Error::Storage)?);
        Ok(())
    }
    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        let end = addr.checked_add(data.len()).ok_or(Error::Storage)?;
        self.nonces
            .get_mut(addr..end)
            .ok_or(Error::Storage)?
            .copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        match self.backing {
            NonceBacking::KeyValue => {
                let r = if self.create {
                    KeyValue::add(NONCE_KEY, &self.nonces)
                } else {
                    KeyValue::set(NONCE_KEY, &self.nonces)
                };
                self.kv_error = r.err();
                self.create &= r.is_err();
                r.map_err(|_| Error::Storage)
            }
            NonceBacking::Ram => Ok(()),
        }
    }
    /// Only this process uses its record (the kernel keys it by the app's
    /// ShortId), and the RAM copy is the store's view: nothing to lock.
    fn lock(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn unlock(&mut self) {}
}

impl Pins for TockHal<'_> {
    fn read_pin(&mut self, pin: u8) -> Result<bool, Error> {
        if u32::from(pin) >= self.gpio_pins {
            return Err(Error::Unsupported);
        }
        let p = u32::from(pin);
        TockSyscalls::command(GPIO, GPIO_ENABLE_INPUT, p, 0)
            .to_result::<(), ErrorCode>()
            .map_err(|_| Error::Unsupported)?;
        TockSyscalls::command(GPIO, GPIO_READ, p, 0)
            .to_result::<u32, ErrorCode>()
            .map(|v| v != 0)
            .map_err(|_| Error::Unsupported)
    }
    fn write_pin(&mut self, pin: u8, value: bool) -> Result<(), Error> {
        if u32::from(pin) >= self.gpio_pins {
            return Err(Error::Unsupported);
        }
        let p = u32::from(pin);
        TockSyscalls::command(GPIO, GPIO_ENABLE_OUTPUT, p, 0)
            .to_result::<(), ErrorCode>()
            .map_err(|_| Error::Unsupported)?;
        let cmd = if value { GPIO_SET } else { GPIO_CLEAR };
        TockSyscalls::command(GPIO, cmd, p, 0)
            .to_result::<(), ErrorCode>()
            .map_err(|_| Error::Unsupported)
    }
}

impl Random for TockHal<'_> {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for chunk in buf.chunks_mut(64) {
            let n = chunk.len() as u32;
            Rng::get_bytes_sync(chunk, n).map_err(|_| Error::Unsupported)?;
        }
        Ok(())
    }
}

impl Watchdog for TockHal<'_> {
    /// Tock has no userspace watchdog interface; nothing to feed.
    fn feed(&mut self) {}
}
