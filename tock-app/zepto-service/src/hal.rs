//! The Zepto HAL on Tock system calls (libtock-rs):
//!
//! * time: the alarm driver's tick counter, extended to 64 bits;
//! * packets: SADLP frames on the console; received bytes come from [`RxRing`]
//!   (filled by the console read upcall), sent frames go out with one console
//!   write each, so a frame is never split by other output;
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
use libtock_platform::subscribe::{OneId, Upcall};
use libtock_platform::{ErrorCode, Syscalls};
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

/// Received console bytes. The console read upcall stores the byte the kernel
/// wrote into the one-byte read buffer and immediately asks for the next byte,
/// so bytes keep arriving while the app is busy (e.g. writing to the console).
pub struct RxRing {
    byte: *const u8,
    ring: [Cell<u8>; 256],
    head: Cell<u8>,
    tail: Cell<u8>,
    /// Bytes dropped because the ring was full.
    pub overflow: Cell<u32>,
    /// Error code of a failed read (the ring stops receiving).
    pub failed: Cell<Option<u32>>,
}

impl RxRing {
    /// A ring reading the kernel's bytes from `byte` (the allowed read buffer).
    pub fn new(byte: *const u8) -> Self {
        Self {
            byte,
            ring: [const { Cell::new(0) }; 256],
            head: Cell::new(0),
            tail: Cell::new(0),
            overflow: Cell::new(0),
            failed: Cell::new(None),
        }
    }

    /// Asks the console for the next byte.
    pub fn start(&self) -> Result<(), ErrorCode> {
        TockSyscalls::command(CONSOLE, CONSOLE_READ, 1, 0).to_result()
    }

    /// Takes the oldest received byte.
    pub fn pop(&self) -> Option<u8> {
        let t = self.tail.get();
        if t == self.head.get() {
            return None;
        }
        self.tail.set(t.wrapping_add(1));
        self.ring.get(usize::from(t)).map(Cell::get)
    }
}

impl Upcall<OneId<CONSOLE, CONSOLE_SUB_READ>> for RxRing {
    fn upcall(&self, status: u32, count: u32, _: u32) {
        if status == 0 && count >= 1 {
            // SAFETY: `byte` points to the one-byte buffer allowed to the
            // console for reading, which lives as long as the subscription
            // (see `main::run`). The kernel writes it only while completing a
            // read, before it queues this upcall, and the next read is only
            // requested below, after the byte has been copied out.
            let b = unsafe { core::ptr::read_volatile(self.byte) };
            let h = self.head.get();
            if h.wrapping_add(1) == self.tail.get() {
                self.overflow.set(self.overflow.get().wrapping_add(1));
            } else {
                if let Some(c) = self.ring.get(usize::from(h)) {
                    c.set(b);
                }
                self.head.set(h.wrapping_add(1));
            }
        }
        if let Err(e) = self.start() {
            self.failed.set(Some(e as u32));
        }
    }
}

/// Where the nonce records live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceBacking {
    /// The key-value driver (persistent).
    KeyValue,
    /// RAM only: provisioned at every start from a random NFS (see README).
    Ram,
}

/// Counters of the console link.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    pub frames_in: u32,
    pub frames_out: u32,
    pub dropped: u32,
}

/// The HAL. Received packets wait in a small queue until the pump takes them.
pub struct TockHal {
    hz: u64,
    last_ticks: Cell<u32>,
    ticks: Cell<u64>,
    decoder: sadlp::Decoder<{ sadlp::decoder_buffer_len(MTU) }>,
    queue: heapless::Deque<heapless::Vec<u8, MTU>, 2>,
    tx: [u8; sadlp::encoded_len(MTU)],
    nonces: [u8; NONCE_BYTES],
    pub backing: NonceBacking,
    gpio_pins: u32,
    pub stats: LinkStats,
}

impl TockHal {
    /// Probes the drivers. Fails if the alarm (time) is missing.
    pub fn new() -> Result<Self, ErrorCode> {
        let hz = u64::from(Alarm::get_frequency()?.0).max(1);
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
            ticks: Cell::new(0),
            decoder: sadlp::Decoder::new(),
            queue: heapless::Deque::new(),
            tx: [0; sadlp::encoded_len(MTU)],
            nonces: [0xff; NONCE_BYTES],
            backing,
            gpio_pins,
            stats: LinkStats::default(),
        })
    }

    /// Number of GPIO pins (0: the board has no GPIO driver).
    pub fn gpio_pins(&self) -> u32 {
        self.gpio_pins
    }

    /// Loads the nonce records from the key-value store; `false` if there are
    /// none (a fresh device) or the store is RAM.
    pub fn load_nonces(&mut self) -> bool {
        self.backing == NonceBacking::KeyValue
            && KeyValue::get(NONCE_KEY, &mut self.nonces).is_ok_and(|n| n as usize == NONCE_BYTES)
    }

    /// Feeds received console bytes to the SADLP decoder; complete packets are
    /// queued for the pump. Returns true if a packet was queued.
    pub fn feed(&mut self, ring: &RxRing) -> bool {
        let mut got = false;
        while let Some(b) = ring.pop() {
            if let Some(p) = self.decoder.push(b) {
                self.stats.frames_in = self.stats.frames_in.wrapping_add(1);
                let queued = heapless::Vec::from_slice(p)
                    .ok()
                    .is_some_and(|v| self.queue.push_back(v).is_ok());
                if queued {
                    got = true;
                } else {
                    self.stats.dropped = self.stats.dropped.wrapping_add(1);
                }
            }
        }
        got
    }

    /// True if a packet waits for the pump.
    pub fn has_packet(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Milliseconds to alarm ticks.
    pub fn ms_to_ticks(&self, ms: u32) -> u32 {
        (u64::from(ms) * self.hz / 1000).clamp(1, u64::from(u32::MAX)) as u32
    }
}

impl Clock for TockHal {
    fn now_ms(&self) -> u64 {
        // The 32-bit tick counter wraps (e.g. after 429 s at 10 MHz); the app
        // reads the clock far more often than that.
        let now = Alarm::get_ticks().unwrap_or(self.last_ticks.get());
        let d = now.wrapping_sub(self.last_ticks.get());
        self.last_ticks.set(now);
        self.ticks.set(self.ticks.get().wrapping_add(u64::from(d)));
        self.ticks.get() * 1000 / self.hz
    }
}

impl Waiter for TockHal {
    /// Only time is waited for here (the app's own loop waits for packets,
    /// IPC and time together).
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        let ms = what.timeout_ms.unwrap_or(100).min(1000);
        let _ = Alarm::sleep_for(Milliseconds(ms));
        WakeReason::Timeout
    }
}

impl PacketBus for TockHal {
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let Some(p) = self.queue.pop_front() else {
            return Ok(None);
        };
        let dst = buf.get_mut(..p.len()).ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(&p);
        Ok(Some(p.len()))
    }

    fn send(&mut self, _bus: BusId, packet: &[u8]) -> Result<(), Error> {
        let n = sadlp::encode(packet, &mut self.tx)?;
        let frame = self.tx.get(..n).ok_or(Error::BufferTooSmall)?;
        Console::write(frame).map_err(|_| Error::Bus)?;
        self.stats.frames_out = self.stats.frames_out.wrapping_add(1);
        Ok(())
    }
}

impl Transceiver for TockHal {
    /// The console is always on.
    fn set_receiver(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
    fn set_transmitter(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
}

impl McuSleep for TockHal {
    /// Tock puts the MCU to sleep whenever no process runs; this process just
    /// waits (the VM's receiver-off rule still holds: nothing is read meanwhile).
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error> {
        Alarm::sleep_for(Milliseconds(ms)).map_err(|_| Error::Unsupported)
    }
}

impl Storage for TockHal {
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
                KeyValue::set(NONCE_KEY, &self.nonces).map_err(|_| Error::Storage)
            }
            NonceBacking::Ram => Ok(()),
        }
    }
}

impl Pins for TockHal {
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

impl Random for TockHal {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for chunk in buf.chunks_mut(64) {
            let n = chunk.len() as u32;
            Rng::get_bytes_sync(chunk, n).map_err(|_| Error::Unsupported)?;
        }
        Ok(())
    }
}

impl Watchdog for TockHal {
    /// Tock has no userspace watchdog interface; nothing to feed.
    fn feed(&mut self) {}
}
