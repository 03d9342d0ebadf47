//! The Linux HAL: a [`Link`] for packets, the monotonic clock, OS randomness, a
//! file-backed EEPROM and simulated pins (logged).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use zepto_kernel::hal::{
    BusId, Clock, McuSleep, PacketBus, Pins, Random, Storage, Transceiver, Waiter, WaitingFor,
    WakeReason, Watchdog, MAX_PINS,
};
use zepto_kernel::Error;

use crate::link::{Link, Source};
use crate::storage::FileStorage;

/// The host port of Zepto OS.
pub struct HostHal {
    start: Instant,
    link: Box<dyn Link>,
    pending: VecDeque<(Vec<u8>, Source)>,
    /// Source of the packet `receive` returned last.
    current: Source,
    /// Simulated pin levels.
    pub pins: [bool; MAX_PINS],
    /// Persistent storage.
    pub storage: FileStorage,
    /// Print HAL events (pin writes, radio, sleep) to stderr.
    pub verbose: bool,
    /// Watchdog feeds so far.
    pub watchdog_feeds: u64,
    /// Last link error seen (a closed stream, say).
    pub link_error: Option<std::io::Error>,
}

impl HostHal {
    /// A HAL on `link` with `storage`.
    pub fn new(link: Box<dyn Link>, storage: FileStorage) -> Self {
        Self {
            start: Instant::now(),
            link,
            pending: VecDeque::new(),
            current: None,
            pins: [false; MAX_PINS],
            storage,
            verbose: false,
            watchdog_feeds: 0,
            link_error: None,
        }
    }

    /// The link's description.
    pub fn link_name(&self) -> String {
        self.link.describe()
    }

    fn log(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            crate::elog!("[{:>8} ms] hal: {msg}", self.now_ms());
        }
    }

    fn poll_link(&mut self, timeout: Option<Duration>) -> bool {
        match self.link.recv(timeout) {
            Ok(Some(p)) => {
                self.pending.push_back(p);
                true
            }
            Ok(None) => false,
            Err(e) => {
                // A dead link is reported once and then behaves as a silent one.
                if self.link_error.is_none() {
                    crate::elog!("link {}: {e}", self.link.describe());
                }
                self.link_error = Some(e);
                std::thread::sleep(timeout.unwrap_or(Duration::from_millis(100)));
                false
            }
        }
    }
}

impl Clock for HostHal {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Waiter for HostHal {
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        if !self.pending.is_empty() {
            return WakeReason::PacketArrived;
        }
        for (pin, value) in what.pins() {
            if self.pins.get(usize::from(pin)) == Some(&value) {
                return WakeReason::Pin(pin);
            }
        }
        let timeout = what
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        if self.poll_link(timeout) {
            WakeReason::PacketArrived
        } else {
            WakeReason::Timeout
        }
    }
}

impl PacketBus for HostHal {
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        if self.pending.is_empty() && !self.poll_link(Some(Duration::ZERO)) {
            return Ok(None);
        }
        let Some((p, source)) = self.pending.pop_front() else {
            return Ok(None);
        };
        self.current = source;
        let dst = buf.get_mut(..p.len()).ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(&p);
        Ok(Some(p.len()))
    }

    fn send(&mut self, _bus: BusId, packet: &[u8]) -> Result<(), Error> {
        self.link.send(packet).map_err(|e| {
            crate::elog!("link {}: send failed: {e}", self.link.describe());
            Error::Bus
        })
    }

    fn accept_source(&mut self, _bus: BusId) {
        self.link.set_peer(self.current);
    }

    fn reply_in_place(&mut self, _bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        let packet = buf.get(..len).ok_or(Error::BufferTooSmall)?;
        self.link.send_to(packet, self.current).map_err(|e| {
            crate::elog!("link {}: send failed: {e}", self.link.describe());
            Error::Bus
        })
    }
}

impl Transceiver for HostHal {
    fn set_receiver(&mut self, on: bool) -> Result<(), Error> {
        self.log(format_args!("receiver {}", if on { "on" } else { "off" }));
        Ok(())
    }
    fn set_transmitter(&mut self, on: bool) -> Result<(), Error> {
        self.log(format_args!(
            "transmitter {}",
            if on { "on" } else { "off" }
        ));
        Ok(())
    }
}

impl McuSleep for HostHal {
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error> {
        self.log(format_args!("mcu sleep {ms} ms"));
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
        Ok(())
    }
}

impl Storage for HostHal {
    fn size(&self) -> usize {
        self.storage.size()
    }
    fn write_granularity(&self) -> usize {
        self.storage.write_granularity()
    }
    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.storage.read(addr, buf)
    }
    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        self.log(format_args!("eeprom write {} bytes at {addr}", data.len()));
        self.storage.write(addr, data)
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.storage.flush()
    }
    fn lock(&mut self) -> Result<(), Error> {
        self.storage.lock()
    }
    fn unlock(&mut self) {
        self.storage.unlock()
    }
}

impl Pins for HostHal {
    fn read_pin(&mut self, pin: u8) -> Result<bool, Error> {
        let v = *self.pins.get(usize::from(pin)).ok_or(Error::Unsupported)?;
        self.log(format_args!("pin {pin} read {}", u8::from(v)));
        Ok(v)
    }
    fn write_pin(&mut self, pin: u8, value: bool) -> Result<(), Error> {
        *self
            .pins
            .get_mut(usize::from(pin))
            .ok_or(Error::Unsupported)? = value;
        self.log(format_args!("pin {pin} <- {}", u8::from(value)));
        Ok(())
    }
}

impl Random for HostHal {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        getrandom::fill(buf).map_err(|_| Error::Unsupported)
    }
}

impl Watchdog for HostHal {
    fn feed(&mut self) {
        self.watchdog_feeds += 1;
    }
}
