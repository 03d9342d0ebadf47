//! An in-memory HAL for tests, simulations and the host port (feature `test-hal`).
//!
//! Time is simulated (a wait advances the clock instead of sleeping), packets sit in
//! fixed queues, storage is a byte array that counts physical writes per granule and
//! can simulate a power cut after a given number of them.

use crate::error::Error;
use crate::hal::{
    BusId, Clock, McuSleep, PacketBus, Pins, Random, Storage, Transceiver, Waiter, WaitingFor,
    WakeReason, Watchdog, MAX_PINS,
};
use crate::sadlp;
use heapless::{Deque, Vec};

/// Largest packet the test HAL carries.
pub const TEST_MTU: usize = 300;

/// Packets queued in each direction.
pub const TEST_QUEUE: usize = 16;

/// One queued packet.
pub type TestPacket = Vec<u8, TEST_MTU>;

/// The in-memory HAL. `S` is the size of its simulated EEPROM.
#[derive(Debug, Clone)]
pub struct TestHal<const S: usize = 256> {
    /// Simulated milliseconds since start.
    pub now_ms: u64,
    /// Current pin levels.
    pub pins: [bool; MAX_PINS],
    /// Number of pin writes made.
    pub pin_writes: u32,
    /// Packets waiting to be received by the device.
    pub rx: Deque<TestPacket, TEST_QUEUE>,
    /// Packets the device sent.
    pub tx: Deque<TestPacket, TEST_QUEUE>,
    /// The simulated EEPROM.
    pub storage: [u8; S],
    /// Write granularity of the simulated EEPROM, in bytes.
    pub granularity: usize,
    /// Physical writes per granule (index = granule number); saturates at `u16::MAX`.
    pub granule_writes: [u16; S],
    /// Total physical granule writes.
    pub storage_writes: u32,
    /// If set, the power fails when this many more granule writes have been made:
    /// the failing write and every later one return [`Error::Storage`].
    pub power_cut_after: Option<u32>,
    /// True once a simulated power cut happened.
    pub powered_off: bool,
    /// Number of [`Storage::flush`] calls.
    pub flushes: u32,
    /// True between [`Storage::lock`] and [`Storage::unlock`].
    pub locked: bool,
    /// Storage writes made while not locked (the nonce store makes none).
    pub unlocked_writes: u32,
    /// Watchdog feeds.
    pub watchdog_feeds: u32,
    /// Calls of [`PacketBus::accept_source`]: received packets that became the peer.
    pub sources_accepted: u32,
    /// Packets sent with [`PacketBus::reply_in_place`] (to a source, not the peer).
    pub replies_to_source: u32,
    /// Receiver state.
    pub receiver_on: bool,
    /// Transmitter state.
    pub transmitter_on: bool,
    /// Milliseconds spent in MCU sleep.
    pub mcu_slept_ms: u64,
    /// Simulates a byte link whose driver reads and writes the heap directly: [`rx`]
    /// holds SADLP frame bodies (what [`TestHal::push_rx`] queues is framed first),
    /// which `receive` writes into the heap block and unframes there, and `tx` holds
    /// whole SADLP frames that `send_in_place` framed inside the heap block.
    ///
    /// [`rx`]: TestHal::rx
    pub sadlp_in_place: bool,
    rng: u64,
}

impl<const S: usize> Default for TestHal<S> {
    fn default() -> Self {
        Self::new(0x5eed)
    }
}

impl<const S: usize> TestHal<S> {
    /// A fresh HAL with erased (0xFF) storage and a deterministic RNG seed.
    pub fn new(seed: u64) -> Self {
        Self {
            now_ms: 0,
            pins: [false; MAX_PINS],
            pin_writes: 0,
            rx: Deque::new(),
            tx: Deque::new(),
            storage: [0xff; S],
            granularity: 4,
            granule_writes: [0; S],
            storage_writes: 0,
            power_cut_after: None,
            powered_off: false,
            flushes: 0,
            locked: false,
            unlocked_writes: 0,
            watchdog_feeds: 0,
            sources_accepted: 0,
            replies_to_source: 0,
            receiver_on: true,
            transmitter_on: true,
            mcu_slept_ms: 0,
            sadlp_in_place: false,
            rng: seed | 1,
        }
    }

    /// Queues a packet for the device to receive.
    pub fn push_rx(&mut self, packet: &[u8]) -> Result<(), Error> {
        let mut p = TestPacket::from_slice(packet).map_err(|_| Error::BufferTooSmall)?;
        if self.sadlp_in_place {
            let mut f = [0u8; TEST_MTU + 8];
            let n = sadlp::encode(packet, &mut f)?;
            p = TestPacket::from_slice(f.get(1..n - 1).ok_or(Error::BufferTooSmall)?)
                .map_err(|_| Error::BufferTooSmall)?;
        }
        self.rx.push_back(p).map_err(|_| Error::Bus)
    }

    /// Takes the oldest packet the device sent.
    pub fn pop_tx(&mut self) -> Option<TestPacket> {
        self.tx.pop_front()
    }

    /// A copy of this HAL as it would be after a reboot: storage kept, everything
    /// volatile (queues, pins, power-cut state) reset.
    pub fn rebooted(&self) -> Self {
        let mut h = Self::new(self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
        h.storage = self.storage;
        h.granularity = self.granularity;
        h.granule_writes = self.granule_writes;
        h.storage_writes = self.storage_writes;
        h.now_ms = self.now_ms;
        h
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough for simulations (never for keys).
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl<const S: usize> Clock for TestHal<S> {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

impl<const S: usize> Waiter for TestHal<S> {
    /// Returns at once: a queued packet first, then a pin already at its value;
    /// otherwise the clock jumps by the timeout. A wait for nothing returns
    /// [`WakeReason::Timeout`] without advancing time.
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        if !self.rx.is_empty() {
            return WakeReason::PacketArrived;
        }
        for (pin, value) in what.pins() {
            if self.pins.get(usize::from(pin)) == Some(&value) {
                return WakeReason::Pin(pin);
            }
        }
        self.now_ms += u64::from(what.timeout_ms.unwrap_or(0));
        WakeReason::Timeout
    }
}

impl<const S: usize> PacketBus for TestHal<S> {
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let Some(p) = self.rx.pop_front() else {
            return Ok(None);
        };
        let dst = buf.get_mut(..p.len()).ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(&p);
        if self.sadlp_in_place {
            return sadlp::decode_in_place(dst).map(Some);
        }
        Ok(Some(p.len()))
    }

    fn send(&mut self, _bus: BusId, packet: &[u8]) -> Result<(), Error> {
        if self.sadlp_in_place {
            // In-place framing goes through `send_in_place` only.
            return Err(Error::InvalidState);
        }
        let p = TestPacket::from_slice(packet).map_err(|_| Error::BufferTooSmall)?;
        self.tx.push_back(p).map_err(|_| Error::Bus)
    }

    fn rx_room(&self, _bus: BusId, mtu: usize) -> usize {
        if self.sadlp_in_place {
            sadlp::decoder_buffer_len(mtu)
        } else {
            mtu
        }
    }

    fn tx_room(&self, _bus: BusId, len: usize) -> usize {
        if self.sadlp_in_place {
            sadlp::encoded_len(len) - len
        } else {
            0
        }
    }

    fn send_in_place(&mut self, bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        if !self.sadlp_in_place {
            return self.send(bus, buf.get(..len).ok_or(Error::BufferTooSmall)?);
        }
        let n = sadlp::encode_in_place(buf, len)?;
        let p = TestPacket::from_slice(buf.get(..n).ok_or(Error::BufferTooSmall)?)
            .map_err(|_| Error::BufferTooSmall)?;
        self.tx.push_back(p).map_err(|_| Error::Bus)
    }

    fn accept_source(&mut self, _bus: BusId) {
        self.sources_accepted += 1;
    }

    fn reply_in_place(&mut self, bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        self.replies_to_source += 1;
        self.send_in_place(bus, buf, len)
    }
}

impl<const S: usize> Transceiver for TestHal<S> {
    fn set_receiver(&mut self, on: bool) -> Result<(), Error> {
        self.receiver_on = on;
        Ok(())
    }
    fn set_transmitter(&mut self, on: bool) -> Result<(), Error> {
        self.transmitter_on = on;
        Ok(())
    }
}

impl<const S: usize> McuSleep for TestHal<S> {
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error> {
        self.now_ms += u64::from(ms);
        self.mcu_slept_ms += u64::from(ms);
        Ok(())
    }
}

impl<const S: usize> Storage for TestHal<S> {
    fn size(&self) -> usize {
        S
    }

    fn write_granularity(&self) -> usize {
        self.granularity
    }

    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        let end = addr.checked_add(buf.len()).ok_or(Error::Storage)?;
        buf.copy_from_slice(self.storage.get(addr..end).ok_or(Error::Storage)?);
        Ok(())
    }

    /// Writes granule by granule; a power cut can tear a multi-granule write.
    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        let end = addr.checked_add(data.len()).ok_or(Error::Storage)?;
        if end > S {
            return Err(Error::Storage);
        }
        if !self.locked {
            self.unlocked_writes += 1;
        }
        let g = self.granularity.max(1);
        let mut at = addr;
        while at < end {
            if self.powered_off {
                return Err(Error::Storage);
            }
            if let Some(left) = self.power_cut_after.as_mut() {
                if *left == 0 {
                    self.powered_off = true;
                    return Err(Error::Storage);
                }
                *left -= 1;
            }
            let granule_end = ((at / g) + 1) * g;
            let chunk_end = granule_end.min(end);
            let src = data
                .get(at - addr..chunk_end - addr)
                .ok_or(Error::Storage)?;
            self.storage
                .get_mut(at..chunk_end)
                .ok_or(Error::Storage)?
                .copy_from_slice(src);
            if let Some(c) = self.granule_writes.get_mut(at / g) {
                *c = c.saturating_add(1);
            }
            self.storage_writes += 1;
            at = chunk_end;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.powered_off {
            return Err(Error::Storage);
        }
        self.flushes += 1;
        Ok(())
    }

    fn lock(&mut self) -> Result<(), Error> {
        if self.locked {
            // Locks are not nested: a second lock is a bug in the caller.
            return Err(Error::InvalidState);
        }
        self.locked = true;
        Ok(())
    }

    fn unlock(&mut self) {
        self.locked = false;
    }
}

impl<const S: usize> Pins for TestHal<S> {
    fn read_pin(&mut self, pin: u8) -> Result<bool, Error> {
        self.pins
            .get(usize::from(pin))
            .copied()
            .ok_or(Error::Unsupported)
    }

    fn write_pin(&mut self, pin: u8, value: bool) -> Result<(), Error> {
        let p = self
            .pins
            .get_mut(usize::from(pin))
            .ok_or(Error::Unsupported)?;
        *p = value;
        self.pin_writes += 1;
        Ok(())
    }
}

impl<const S: usize> Random for TestHal<S> {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_random().to_le_bytes();
            chunk.copy_from_slice(r.get(..chunk.len()).ok_or(Error::BufferTooSmall)?);
        }
        Ok(())
    }
}

impl<const S: usize> Watchdog for TestHal<S> {
    fn feed(&mut self) {
        self.watchdog_feeds += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_pins_time() {
        let mut hal = TestHal::<64>::new(1);
        hal.push_rx(&[1, 2, 3]).unwrap();
        assert_eq!(
            hal.wait_for(&WaitingFor::time(10)),
            WakeReason::PacketArrived
        );
        let mut buf = [0u8; 8];
        assert_eq!(hal.receive(0, &mut buf), Ok(Some(3)));
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(hal.receive(0, &mut buf), Ok(None));
        hal.write_pin(3, true).unwrap();
        let w = WaitingFor::time(10).with_pin(3, true).unwrap();
        assert_eq!(hal.wait_for(&w), WakeReason::Pin(3));
        assert_eq!(hal.wait_for(&WaitingFor::time(10)), WakeReason::Timeout);
        assert_eq!(hal.now_ms(), 10);
        hal.send(0, &[9]).unwrap();
        assert_eq!(hal.pop_tx().as_deref(), Some(&[9u8][..]));
    }

    #[test]
    fn storage_counts_granules_and_tears_on_power_cut() {
        let mut hal = TestHal::<16>::new(1);
        hal.write(2, &[1, 2, 3, 4]).unwrap(); // touches granules 0 and 1
        assert_eq!(hal.storage_writes, 2);
        assert_eq!(&hal.granule_writes[..2], &[1, 1]);
        hal.power_cut_after = Some(1);
        assert_eq!(hal.write(4, &[9; 8]), Err(Error::Storage));
        // Only the first granule of the torn write landed.
        assert_eq!(&hal.storage[4..12], &[9, 9, 9, 9, 0xff, 0xff, 0xff, 0xff]);
        let mut again = hal.rebooted();
        assert!(!again.powered_off);
        let mut buf = [0u8; 4];
        again.read(4, &mut buf).unwrap();
        assert_eq!(buf, [9; 4]);
        assert_eq!(again.write(15, &[0, 0]), Err(Error::Storage));
    }

    #[test]
    fn random_is_deterministic_per_seed() {
        let mut a = TestHal::<4>::new(7);
        let mut b = TestHal::<4>::new(7);
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill_random(&mut x).unwrap();
        b.fill_random(&mut y).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 13]);
    }
}
