//! zepto-kernel's HAL traits on Zephyr.
//!
//! | trait | Zephyr |
//! | --- | --- |
//! | [`Clock`] | `k_uptime_get()` (kernel clock, ms) |
//! | [`Waiter`] | `k_sem_take` with timeout on the pump's wake semaphore (glue.c), given by the UART receive interrupt, GPIO pin interrupts, local clients and the PM notifier |
//! | [`PacketBus`] | SADLP frames ([`zepto_kernel::sadlp`]) on the `zepto,uart` UART ([`UartPort`]) |
//! | [`Storage`] | NVS on `storage_partition`, a semihosting file, or none (glue.c) |
//! | [`Pins`] | GPIOs of the devicetree's `/zephyr,user` `zepto-gpios` (none: `Unsupported`) |
//! | [`Random`] | `sys_csrand_get()` (entropy driver), else `sys_rand_get()` |
//! | [`Watchdog`] | the board's `watchdog0` alias, armed when `CONFIG_ZEPTO_WATCHDOG_TIMEOUT_MS` > 0 |
//! | [`Transceiver`] | accepted and recorded: a UART has no receiver or transmitter to switch |
//! | [`McuSleep`] | `k_sleep` (the idle thread and the PM subsystem do the sleeping) |

use core::ffi::c_int;

use zephyr::kconfig;
use zepto_kernel::hal::{
    BusId, Clock, McuSleep, PacketBus, Pins, Random, Storage, Transceiver, Waiter, WaitingFor,
    WakeReason, Watchdog,
};
use zepto_kernel::sadlp;
use zepto_kernel::Error;

use crate::uart::{self, UartPort};

/// Largest packet (`CONFIG_ZEPTO_MAX_PACKET_SIZE`).
pub const MAX_PACKET: usize = kconfig::CONFIG_ZEPTO_MAX_PACKET_SIZE as usize;

/// SADLP decoder buffer for [`MAX_PACKET`].
const DECODER_LEN: usize = sadlp::decoder_buffer_len(MAX_PACKET);

/// Largest encoded frame for [`MAX_PACKET`].
const FRAME_LEN: usize = sadlp::encoded_len(MAX_PACKET);

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
    port: UartPort,
    decoder: sadlp::Decoder<DECODER_LEN>,
    watchdog_ms: u32,
    storage_size: usize,
    granule: usize,
    storage: StorageKind,
    pins: usize,
    receiver_on: bool,
    partial: bool,
}

impl ZephyrHal {
    /// Gathers the HAL around the opened packet UART: opens the storage, configures
    /// the pins and arms the watchdog.
    pub fn new(port: UartPort) -> Self {
        let (mut size, mut granule) = (0usize, 1usize);
        // SAFETY: both pointers are valid for a write of one usize.
        let kind = match unsafe { zepto_storage_open(&mut size, &mut granule) } {
            1 => StorageKind::Nvs,
            2 => StorageKind::Semihost,
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
            port,
            decoder: sadlp::Decoder::new(),
            watchdog_ms,
            storage_size: size,
            granule: granule.max(1),
            storage: kind,
            pins,
            receiver_on: true,
            partial: false,
        }
    }

    /// The nonce storage medium.
    pub fn storage_kind(&self) -> StorageKind {
        self.storage
    }

    /// Host path of the records file (semihosting), else "".
    pub fn storage_path(&self) -> &'static str {
        // SAFETY: glue.c returns a pointer to a NUL-terminated string literal.
        let path = unsafe { core::ffi::CStr::from_ptr(zepto_storage_path()) };
        path.to_str().unwrap_or("?")
    }

    /// Number of Zepto pins (GPIOs from the devicetree).
    pub fn pin_count(&self) -> usize {
        self.pins
    }

    /// True if a hardware watchdog is running.
    pub fn watchdog_armed(&self) -> bool {
        self.watchdog_ms > 0
    }

    /// True if the storage was never written (every byte erased): a new device.
    pub fn storage_blank(&mut self) -> bool {
        let mut buf = [0u8; 16];
        let mut addr = 0;
        while addr < self.storage_size {
            let n = buf.len().min(self.storage_size - addr);
            let Some(chunk) = buf.get_mut(..n) else {
                return false;
            };
            if self.read(addr, chunk).is_err() || chunk.iter().any(|b| *b != 0xff) {
                return false;
            }
            addr += n;
        }
        true
    }

    /// True while a frame is partly received (the link is busy).
    pub fn mid_frame(&self) -> bool {
        self.partial || uart::rx_pending()
    }

    /// Forgets a half-received frame whose rest did not come (the line went quiet),
    /// unless more bytes are already waiting.
    pub fn abandon_partial_frame(&mut self) {
        if !uart::rx_pending() {
            self.decoder.reset();
            self.partial = false;
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

    /// SADLP counters (frames, drops).
    pub fn sadlp_stats(&self) -> &sadlp::DecoderStats {
        self.decoder.stats()
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
        if uart::rx_pending() {
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
    /// Moves received bytes from the ring into the SADLP decoder, one at a time, until
    /// a frame completes; bytes after it stay in the ring for the next call.
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let mut byte = [0u8; 1];
        while self.port.read(&mut byte) == 1 {
            let [b] = byte;
            self.partial = b != sadlp::DELIMITER;
            if let Some(packet) = self.decoder.push(b) {
                let dst = buf.get_mut(..packet.len()).ok_or(Error::BufferTooSmall)?;
                dst.copy_from_slice(packet);
                return Ok(Some(packet.len()));
            }
        }
        Ok(None)
    }

    fn send(&mut self, _bus: BusId, packet: &[u8]) -> Result<(), Error> {
        let mut frame = [0u8; FRAME_LEN];
        let n = sadlp::encode(packet, &mut frame)?;
        self.port
            .write(frame.get(..n).ok_or(Error::BufferTooSmall)?);
        Ok(())
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
