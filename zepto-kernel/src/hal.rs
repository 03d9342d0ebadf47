//! Hardware Abstraction Layer: the small traits an OS port implements
//! (`reference-implementation/hal_interface.rst` and the HAL section of zepto-os.rst).
//!
//! Each trait covers one facility, so a port implements only what its board has;
//! the pieces the main pump needs are gathered in [`Platform`].

use crate::error::Error;

/// Number of pins a [`WaitingFor`] can name (`NPINS` of zepto-os.rst).
pub const MAX_PINS: usize = 32;

/// Bytes of a pin bitmap in [`WaitingFor`].
pub const PIN_BYTES: usize = MAX_PINS.div_ceil(8);

/// What a waiting VM or plugin waits for (zepto-os.rst "Asynchronous Returns").
///
/// The conditions are alternatives: the wait ends at the timeout *or* when any of the
/// named pins takes its value, whichever happens first. An incoming packet always ends
/// a wait too (the pump handles packets first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitingFor {
    /// Time to wait, in milliseconds; `None` waits for pins (or a packet) only.
    pub timeout_ms: Option<u32>,
    /// Bitmap of pins to watch (bit `n % 8` of byte `n / 8` is pin `n`).
    pub pins_to_wait: [u8; PIN_BYTES],
    /// Value each watched pin is waited for.
    pub pin_values_to_wait: [u8; PIN_BYTES],
}

impl WaitingFor {
    /// A wait for a time only.
    pub const fn time(ms: u32) -> Self {
        Self {
            timeout_ms: Some(ms),
            pins_to_wait: [0; PIN_BYTES],
            pin_values_to_wait: [0; PIN_BYTES],
        }
    }

    /// Adds "or until `pin` reads `value`". Pins beyond [`MAX_PINS`] are refused.
    pub fn with_pin(mut self, pin: u8, value: bool) -> Result<Self, Error> {
        let (byte, bit) = (usize::from(pin / 8), pin % 8);
        let mask = self.pins_to_wait.get_mut(byte).ok_or(Error::Unsupported)?;
        *mask |= 1 << bit;
        let vals = self
            .pin_values_to_wait
            .get_mut(byte)
            .ok_or(Error::Unsupported)?;
        if value {
            *vals |= 1 << bit;
        } else {
            *vals &= !(1 << bit);
        }
        Ok(self)
    }

    /// The pins waited for, with their values.
    pub fn pins(&self) -> impl Iterator<Item = (u8, bool)> + '_ {
        PinIter { w: self, next: 0 }
    }

    /// True if the wait names neither a time nor a pin.
    pub fn is_empty(&self) -> bool {
        self.timeout_ms.is_none() && self.pins_to_wait.iter().all(|b| *b == 0)
    }

    /// Combines two waits: the earlier timeout and the union of pins ("any of").
    pub fn merge(&self, other: &WaitingFor) -> WaitingFor {
        let timeout_ms = match (self.timeout_ms, other.timeout_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut out = WaitingFor {
            timeout_ms,
            ..*self
        };
        // Bitwise, a byte of pins at a time: `other`'s pins are added with their
        // values (as `with_pin` would add them one by one).
        for (i, &m) in other.pins_to_wait.iter().enumerate() {
            let v = other.pin_values_to_wait.get(i).copied().unwrap_or(0);
            if let (Some(om), Some(ov)) = (
                out.pins_to_wait.get_mut(i),
                out.pin_values_to_wait.get_mut(i),
            ) {
                *om |= m;
                *ov = (*ov & !m) | (v & m);
            }
        }
        out
    }
}

/// The iterator of [`WaitingFor::pins`]: one plain loop over the bitmap.
struct PinIter<'a> {
    w: &'a WaitingFor,
    next: u8,
}

impl Iterator for PinIter<'_> {
    type Item = (u8, bool);

    fn next(&mut self) -> Option<(u8, bool)> {
        while usize::from(self.next) < MAX_PINS {
            let p = self.next;
            self.next += 1;
            let (byte, bit) = (usize::from(p / 8), p % 8);
            let mask = self.w.pins_to_wait.get(byte).copied().unwrap_or(0);
            if mask & (1 << bit) != 0 {
                let v = self.w.pin_values_to_wait.get(byte).copied().unwrap_or(0);
                return Some((p, v & (1 << bit) != 0));
            }
        }
        None
    }
}

/// Which event ended a [`Waiter::wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    /// The timeout expired.
    Timeout,
    /// The pin took the value waited for.
    Pin(u8),
    /// A packet arrived on a bus.
    PacketArrived,
}

/// Identifies one bus (link) of a device; most devices have only bus 0.
pub type BusId = u8;

/// Monotonic time.
pub trait Clock {
    /// Milliseconds since an arbitrary start; never goes backwards.
    fn now_ms(&self) -> u64;
}

/// Blocking wait for time, pins and packets (any of them).
pub trait Waiter {
    /// Waits until the first of: the timeout, a watched pin taking its value, or a
    /// packet arriving. A wait with no timeout and no pins waits for a packet.
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason;
}

/// Packet transport: one call moves one whole packet (framing is below this trait,
/// in the port or in [`crate`]'s SADLP).
pub trait PacketBus {
    /// Receives one packet into `buf` if one is pending; returns its length, or
    /// `Ok(None)` when none is waiting. A packet longer than `buf` is dropped and
    /// reported as [`Error::BufferTooSmall`].
    fn receive(&mut self, bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error>;
    /// Sends one packet.
    fn send(&mut self, bus: BusId, packet: &[u8]) -> Result<(), Error>;

    /// Heap bytes [`PacketBus::receive`] gets for a packet of up to `mtu` bytes. A
    /// byte link that receives the encoded frame into the heap block and unframes
    /// it there asks for the frame size (e.g. [`sadlp::decoder_buffer_len`]);
    /// by default `mtu`.
    ///
    /// [`sadlp::decoder_buffer_len`]: crate::sadlp::decoder_buffer_len
    fn rx_room(&self, _bus: BusId, mtu: usize) -> usize {
        mtu
    }

    /// Free bytes [`PacketBus::send_in_place`] needs after a packet of `len` bytes
    /// (e.g. [`sadlp::encoded_len`]`(len) - len` to frame it in place); by default 0.
    ///
    /// [`sadlp::encoded_len`]: crate::sadlp::encoded_len
    fn tx_room(&self, _bus: BusId, _len: usize) -> usize {
        0
    }

    /// Sends the packet `buf[..len]`. `buf` is the packet's heap block followed by
    /// [`PacketBus::tx_room`] free bytes, which the bus may overwrite (to frame the
    /// packet in place and hand the frame to its driver without a copy). By
    /// default calls [`PacketBus::send`].
    fn send_in_place(&mut self, bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        self.send(bus, buf.get(..len).ok_or(Error::BufferTooSmall)?)
    }

    /// The packet [`PacketBus::receive`] returned last passed SASP with a fresh
    /// nonce: on a bus with addresses (UDP, a radio) its source becomes the address
    /// later packets are sent to. The pump calls it for nothing else, so garbage,
    /// forgeries and replays can never take the replies. By default nothing (a
    /// point-to-point link).
    fn accept_source(&mut self, _bus: BusId) {}

    /// Like [`PacketBus::send_in_place`], but to the source of the packet received
    /// last, which does *not* become the peer: the "old nonce" answer to an
    /// authentic packet that may be a replay. By default
    /// [`PacketBus::send_in_place`].
    fn reply_in_place(&mut self, bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        self.send_in_place(bus, buf, len)
    }
}

/// Radio (or line driver) power control (Zepto VM TRANSMITTER instruction).
pub trait Transceiver {
    /// Turns the receiver on or off.
    fn set_receiver(&mut self, on: bool) -> Result<(), Error>;
    /// Turns the transmitter on or off.
    fn set_transmitter(&mut self, on: bool) -> Result<(), Error>;
}

/// Low-power sleep of the whole MCU (Zepto VM MCUSLEEP instruction).
pub trait McuSleep {
    /// Sleeps for `ms` milliseconds; RAM may or may not be preserved on real MCUs,
    /// so a port that loses RAM must not return but reboot.
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error>;
}

/// EEPROM-like persistent storage, written in units of [`Storage::write_granularity`].
pub trait Storage {
    /// Total bytes addressable.
    fn size(&self) -> usize;
    /// Bytes physically written by any write (e.g. 4 for 32-bit EEPROM words). Writes
    /// should be aligned to and sized in multiples of it to spare the cells.
    fn write_granularity(&self) -> usize;
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes `data` at `addr` (may be buffered until [`Storage::flush`]).
    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error>;
    /// Makes every previous write durable.
    fn flush(&mut self) -> Result<(), Error>;

    /// Takes exclusive use of storage that other processes share, and brings this
    /// view of it up to date; [`Storage::unlock`] ends it. The nonce store brackets
    /// every read-modify-write of its records with the two (`docs/security.md`). On
    /// storage no one else uses (an MCU's flash) there is nothing to do and `lock`
    /// returns `Ok(())`; a wrapper around another `Storage` must pass both on (there
    /// are no default bodies, so it cannot forget to).
    fn lock(&mut self) -> Result<(), Error>;

    /// Ends what [`Storage::lock`] began.
    fn unlock(&mut self);
}

/// Digital pins.
pub trait Pins {
    /// Reads a digital pin.
    fn read_pin(&mut self, pin: u8) -> Result<bool, Error>;
    /// Drives a digital pin.
    fn write_pin(&mut self, pin: u8, value: bool) -> Result<(), Error>;
}

/// Random bytes from the platform (hardware RNG or OS).
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error>;
}

/// Watchdog.
pub trait Watchdog {
    /// Feeds the watchdog.
    fn feed(&mut self);
}

/// Everything the main pump needs from a port.
pub trait Platform: Clock + Waiter + PacketBus + Storage + Random + Watchdog {}

impl<T: Clock + Waiter + PacketBus + Storage + Random + Watchdog> Platform for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_pins_and_merge() {
        let a = WaitingFor::time(500).with_pin(2, true).unwrap();
        let b = WaitingFor::time(100).with_pin(4, false).unwrap();
        let m = a.merge(&b);
        assert_eq!(m.timeout_ms, Some(100));
        let pins: Vec<(u8, bool)> = m.pins().collect();
        assert_eq!(pins, vec![(2, true), (4, false)]);
        assert_eq!(m.pins_to_wait[0], 0b10100);
        assert_eq!(m.pin_values_to_wait[0], 0b00100);
        assert!(WaitingFor::default().is_empty());
        assert_eq!(
            WaitingFor::default().with_pin(32, true),
            Err(Error::Unsupported)
        );
    }
}
