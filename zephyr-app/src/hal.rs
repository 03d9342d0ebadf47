//! zepto-kernel's HAL traits on Zephyr.
//!
//! | trait | Zephyr |
//! | --- | --- |
//! | [`Clock`] | `k_uptime_get()` (kernel clock, ms) |
//! | [`Waiter`] | `k_sem_take` with timeout on the UART receive signal |
//! | [`Random`] | `sys_csrand_get()` (entropy driver), else `sys_rand_get()` |
//! | [`Watchdog`] | the board's `watchdog0` alias, armed when `CONFIG_ZEPTO_WATCHDOG_TIMEOUT_MS` > 0 |
//! | [`Storage`] | placeholder: no persistent storage yet ([`NoStorage`]) |
//!
//! Packets: the byte stream of [`UartPort`] carries SADLP frames; the packet bus is
//! the SADLP decoder over it, attached where the main pump is
//! ([`crate::pump::zepto_main_pump`]).

use core::ffi::c_int;

use zephyr::kconfig;
use zephyr::time::{Duration, Forever, Tick, Timeout};
use zepto_kernel::hal::{Clock, Random, Storage, Waiter, WaitingFor, WakeReason, Watchdog};
use zepto_kernel::Error;

use crate::uart::{self, UartPort};

extern "C" {
    /// Fills `buf` with random bytes; 0 or a negative errno (glue.c).
    fn zepto_random_fill(buf: *mut u8, len: usize) -> c_int;
    /// Arms the board's watchdog; 0 or a negative errno (glue.c).
    fn zepto_watchdog_start(timeout_ms: u32) -> c_int;
    /// Feeds the armed watchdog; does nothing if none is armed (glue.c).
    fn zepto_watchdog_feed();
}

/// Kernel uptime as the Zepto clock.
pub struct ZephyrClock;

impl Clock for ZephyrClock {
    fn now_ms(&self) -> u64 {
        // Uptime never goes backwards and starts at 0, so it is never negative.
        u64::try_from(zephyr::sys::uptime_get()).unwrap_or(0)
    }
}

/// Waits on the UART receive signal with a timeout.
///
/// Pins are not watched yet (no GPIO mapping for Zepto pins on Zephyr): a wait that
/// names pins ends only at its timeout or on received bytes.
pub struct ZephyrWaiter;

impl Waiter for ZephyrWaiter {
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        if uart::rx_pending() {
            return WakeReason::PacketArrived;
        }
        let timeout: Timeout = match what.timeout_ms {
            Some(ms) => Duration::millis_at_least(Tick::from(ms)).into(),
            None => Forever.into(),
        };
        match uart::RX_SIGNAL.take(timeout) {
            Ok(()) => WakeReason::PacketArrived,
            Err(_) => WakeReason::Timeout,
        }
    }
}

/// Zephyr's random number subsystem.
pub struct ZephyrRandom;

impl Random for ZephyrRandom {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes.
        match unsafe { zepto_random_fill(buf.as_mut_ptr(), buf.len()) } {
            0 => Ok(()),
            _ => Err(Error::Unsupported),
        }
    }
}

/// The board's hardware watchdog (`watchdog0` alias), if armed.
pub struct ZephyrWatchdog {
    armed: bool,
}

impl ZephyrWatchdog {
    /// Arms the watchdog with `CONFIG_ZEPTO_WATCHDOG_TIMEOUT_MS` (0 leaves it off).
    /// Boards without one run without a watchdog.
    pub fn start() -> Self {
        let ms = kconfig::CONFIG_ZEPTO_WATCHDOG_TIMEOUT_MS;
        let armed = ms > 0
            && u32::try_from(ms).is_ok_and(|ms| {
                // SAFETY: plain call into glue.c; no pointers.
                unsafe { zepto_watchdog_start(ms) == 0 }
            });
        ZephyrWatchdog { armed }
    }

    /// True if a hardware watchdog is running.
    pub fn is_armed(&self) -> bool {
        self.armed
    }
}

impl Watchdog for ZephyrWatchdog {
    fn feed(&mut self) {
        if self.armed {
            // SAFETY: plain call into glue.c; no pointers.
            unsafe { zepto_watchdog_feed() };
        }
    }
}

/// Placeholder for persistent storage: holds nothing, every access fails with
/// [`Error::Unsupported`]. To be backed by a flash partition (Zephyr's settings/NVS
/// or ZMS on `storage_partition`).
pub struct NoStorage;

impl Storage for NoStorage {
    fn size(&self) -> usize {
        0
    }
    fn write_granularity(&self) -> usize {
        1
    }
    fn read(&mut self, _addr: usize, _buf: &mut [u8]) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
    fn write(&mut self, _addr: usize, _data: &[u8]) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
    fn flush(&mut self) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
}

/// Everything the pump uses, gathered.
pub struct ZephyrHal {
    /// Packet UART.
    pub port: UartPort,
    /// Kernel clock.
    pub clock: ZephyrClock,
    /// Waits for received bytes or a timeout.
    pub waiter: ZephyrWaiter,
    /// Random bytes.
    pub random: ZephyrRandom,
    /// Hardware watchdog (possibly absent).
    pub watchdog: ZephyrWatchdog,
    /// Persistent storage (placeholder).
    pub storage: NoStorage,
}

impl ZephyrHal {
    /// Gathers the HAL around an opened packet UART and arms the watchdog.
    pub fn new(port: UartPort) -> Self {
        ZephyrHal {
            port,
            clock: ZephyrClock,
            waiter: ZephyrWaiter,
            random: ZephyrRandom,
            watchdog: ZephyrWatchdog::start(),
            storage: NoStorage,
        }
    }
}
