//! zepto-kernel's HAL traits on Zephyr.
//!
//! | trait | Zephyr |
//! | --- | --- |
//! | [`Clock`] | `k_uptime_get()` (kernel clock, ms) |
//! | [`Waiter`] | `k_sem_take` with timeout on the pump's wake semaphore (glue.c), given by the UART receive interrupt or the UDP socket watcher, GPIO pin interrupts, local clients and the PM notifier |
//! | [`PacketBus`] | [`Link`]: SADLP frames ([`zepto_kernel::sadlp`]) on the `zepto,uart` UART ([`crate::uart::UartLink`]), or UDP datagrams ([`crate::udp::UdpLink`]) |
//! | [`Storage`] | NVS on `storage_partition`, a semihosting file, or none (glue.c) |
//! | [`Pins`] | GPIOs of the devicetree's `/zephyr,user` `zepto-gpios` (none: `Unsupported`) |
//! | [`Random`] | `sys_csrand_get()` (entropy driver), else `sys_rand_get()` |
//! | [`Watchdog`] | the board's `watchdog0` alias, armed when `CONFIG_ZEPTO_WATCHDOG_TIMEOUT_MS` > 0 |
//! | [`Transceiver`] | accepted and recorded: a UART has no receiver or transmitter to switch |
//! | [`McuSleep`] | `k_sleep` (the idle thread and the PM subsystem do the sleeping) |

use core::ffi::{c_int, CStr};

use zephyr::kconfig;
use zepto_kernel::hal::{
    BusId, Clock, McuSleep, PacketBus, Pins, Random, Storage, Transceiver, Waiter, WaitingFor,
    WakeReason, Watchdog,
};
use zepto_kernel::Error;

/// Largest packet (`CONFIG_ZEPTO_MAX_PACKET_SIZE`).
pub const MAX_PACKET: usize = kconfig::CONFIG_ZEPTO_MAX_PACKET_SIZE as usize;

/// The packet bus of this build: SADLP frames on a UART.
#[cfg(not(CONFIG_ZEPTO_TRANSPORT_UDP))]
pub type Link = crate::uart::UartLink;
/// The packet bus of this build: UDP datagrams.
#[cfg(CONFIG_ZEPTO_TRANSPORT_UDP)]
pub type Link = crate::udp::UdpLink;

extern "C" {
    fn zepto_random_fill(buf: *mut u8, len: usize) -> c_int;
    fn zepto_watchdog_start(timeout_ms: u32) -> c_int;
    fn zepto_watchdog_feed();
    fn zepto_wake_take(ms: i32) -> c_int;
    fn zepto_pins_init() -> c_int;
    fn zepto_pin_read(pin: u8) -> c_int;
    fn zepto_pin_write(pin: u8, value: c_int) -> c_int;
    fn zepto_storage_open(size: *mut usize, granule: *mut usize) -> c_int;
    fn zepto_storage_read(addr: usize, buf: *mut u8, len: usize) -> c_int;
    fn zepto_storage_write(addr: usize, data: *const u8, len: usize) -> c_int;
    fn zepto_storage_path() -> *const core::ffi::c_char;
}

/// Which medium keeps the nonces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// NVS on the devicetree's `storage_partition`.
    Nvs,
    /// A host file through ARM semihosting.
    Semihost,
    /// None: the network device must not run.
    None,
}

impl StorageKind {
    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::Nvs => "NVS on storage_partition",
            StorageKind::Semihost => "semihosting file",
            StorageKind::None => "none",
        }
    }
}

/// Everything the pump, the VM and the service use.
pub struct ZephyrHal {
    link: Link,
    watchdog_ms: u32,
    storage_size: usize,
    granule: usize,
    storage: StorageKind,
    pins: usize,
    receiver_on: bool,
}

impl ZephyrHal {
    /// Gathers the HAL around the opened packet link: opens the storage, configures
    /// the pins and arms the watchdog.
    pub fn new(link: Link) -> Self {
        let (mut size, mut granule) = (0usize, 1usize);
        // Only the medium this build has can answer (and only its name is linked).
        // SAFETY: both pointers are valid for a write of one usize.
        let kind = match unsafe { zepto_storage_open(&mut size, &mut granule) } {
            1 if cfg!(CONFIG_ZEPTO_STORAGE_NVS) => StorageKind::Nvs,
            2 if cfg!(CONFIG_ZEPTO_STORAGE_SEMIHOST) => StorageKind::Semihost,
            _ => StorageKind::None,
        };
        // SAFETY: plain call into glue.c.
        let pins = usize::try_from(unsafe { zepto_pins_init() }).unwrap_or(0);
        let ms = u32::try_from(kconfig::CONFIG_ZEPTO_WATCHDOG_TIMEOUT_MS).unwrap_or(0);
        // SAFETY: plain call into glue.c; no pointers.
        let watchdog_ms = if ms > 0 && unsafe { zepto_watchdog_start(ms) } == 0 {
            ms
        } else {
            0
        };
        ZephyrHal {
            link,
            watchdog_ms,
            storage_size: size,
            granule: granule.max(1),
            storage: kind,
            pins,
            receiver_on: true,
        }
    }

    /// The nonce storage medium.
    pub fn storage_kind(&self) -> StorageKind {
        self.storage
    }

    /// Host path of the records file (semihosting), else "".
    pub fn storage_path(&self) -> &'static CStr {
        // SAFETY: glue.c returns a pointer to a NUL-terminated string literal.
        unsafe { CStr::from_ptr(zepto_storage_path()) }
    }

    /// Number of Zepto pins (GPIOs from the devicetree).
    pub fn pin_count(&self) -> usize {
        self.pins
    }

    /// True if a hardware watchdog is running.
    pub fn watchdog_armed(&self) -> bool {
        self.watchdog_ms > 0
    }

    /// The packet link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// True while the link is busy: a frame partly received, or packets waiting.
    pub fn mid_frame(&self) -> bool {
        self.link.busy()
    }

    /// Forgets a half-received frame whose rest did not come (the line went quiet).
    pub fn abandon_partial_frame(&mut self) {
        self.link.abandon_partial_frame();
    }

    /// Drops everything the link has received (while no device reads it).
    pub fn discard_input(&mut self) {
        let mut buf = [0u8; MAX_PACKET];
        // Each call consumes a frame, a datagram, or the bytes received so far.
        while !matches!(self.link.receive(&mut buf), Ok(None)) {}
        self.link.abandon_partial_frame();
    }

    /// The board's random source, for the start-up line.
    pub fn random_source() -> &'static str {
        if cfg!(CONFIG_TEST_RANDOM_GENERATOR) {
            "test generator (not random)"
        } else if cfg!(CONFIG_ENTROPY_HAS_DRIVER) {
            "entropy driver"
        } else {
            "none"
        }
    }

    /// Fills `buf` from the board's random source (see [`Random`]).
    pub fn random_bytes(buf: &mut [u8]) -> Result<(), Error> {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes.
        match unsafe { zepto_random_fill(buf.as_mut_ptr(), buf.len()) } {
            0 => Ok(()),
            _ => Err(Error::Unsupported),
        }
    }
}

impl Clock for ZephyrHal {
    fn now_ms(&self) -> u64 {
        // Uptime never goes backwards and starts at 0, so it is never negative.
        u64::try_from(zephyr::sys::uptime_get()).unwrap_or(0)
    }
}

impl Waiter for ZephyrHal {
    /// Sleeps on the wake semaphore; pins wake it through their GPIO interrupts, so a
    /// wait for pins only needs no polling. With a watchdog the wait is cut to half
    /// its timeout (the pump feeds it on every round).
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        if self.link.rx_pending() {
            return WakeReason::PacketArrived;
        }
        let mut ms = what.timeout_ms.map(|t| t.min(i32::MAX as u32) as i32);
        if self.watchdog_ms > 0 {
            let half = (self.watchdog_ms / 2).max(1).min(i32::MAX as u32) as i32;
            ms = Some(ms.map_or(half, |m| m.min(half)));
        }
        // SAFETY: plain call into glue.c.
        match unsafe { zepto_wake_take(ms.unwrap_or(-1)) } {
            0 => WakeReason::PacketArrived,
            _ => WakeReason::Timeout,
        }
    }
}

impl PacketBus for ZephyrHal {
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        self.link.receive(buf)
    }

    fn send(&mut self, _bus: BusId, packet: &[u8]) -> Result<(), Error> {
        self.link.send(packet)
    }

    fn accept_source(&mut self, _bus: BusId) {
        self.link.accept_source();
    }

    fn reply_in_place(&mut self, _bus: BusId, buf: &mut [u8], len: usize) -> Result<(), Error> {
        self.link
            .reply(buf.get(..len).ok_or(Error::BufferTooSmall)?)
    }
}

impl Storage for ZephyrHal {
    fn size(&self) -> usize {
        self.storage_size
    }
    fn write_granularity(&self) -> usize {
        self.granule
    }
    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        match unsafe { zepto_storage_read(addr, buf.as_mut_ptr(), buf.len()) } {
            0 => Ok(()),
            _ => Err(Error::Storage),
        }
    }
    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        // SAFETY: `data` is valid for reads of `data.len()` bytes.
        match unsafe { zepto_storage_write(addr, data.as_ptr(), data.len()) } {
            0 => Ok(()),
            _ => Err(Error::Storage),
        }
    }
    fn flush(&mut self) -> Result<(), Error> {
        // Every write already reached the medium (an NVS entry or the host file).
        if self.storage == StorageKind::None {
            Err(Error::Storage)
        } else {
            Ok(())
        }
    }
    /// Only the pump thread uses the records: nothing to lock.
    fn lock(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn unlock(&mut self) {}
}

impl Pins for ZephyrHal {
    fn read_pin(&mut self, pin: u8) -> Result<bool, Error> {
        // SAFETY: plain call into glue.c.
        match unsafe { zepto_pin_read(pin) } {
            v if v >= 0 => Ok(v != 0),
            _ => Err(Error::Unsupported),
        }
    }
    fn write_pin(&mut self, pin: u8, value: bool) -> Result<(), Error> {
        // SAFETY: plain call into glue.c.
        match unsafe { zepto_pin_write(pin, c_int::from(value)) } {
            0 => Ok(()),
            _ => Err(Error::Unsupported),
        }
    }
}

impl Random for ZephyrHal {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        Self::random_bytes(buf)
    }
}

impl Watchdog for ZephyrHal {
    fn feed(&mut self) {
        if self.watchdog_ms > 0 {
            // SAFETY: plain call into glue.c; no pointers.
            unsafe { zepto_watchdog_feed() };
        }
    }
}

impl Transceiver for ZephyrHal {
    fn set_receiver(&mut self, on: bool) -> Result<(), Error> {
        // A wired UART keeps receiving; the state is only recorded.
        self.receiver_on = on;
        Ok(())
    }
    fn set_transmitter(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
}

impl McuSleep for ZephyrHal {
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error> {
        zephyr::time::sleep(zephyr::time::Duration::millis_at_least(
            zephyr::time::Tick::from(ms),
        ));
        Ok(())
    }
}
