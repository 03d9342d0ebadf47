//! The HAL of the BBC micro:bit (nRF51822): UART0 as the SADLP byte link, TIMER0 as
//! the clock, the GPIO port (LED matrix pins), two flash pages as nonce storage
//! (NVMC) and the RNG.
//!
//! Everything polls: no interrupt handler, no allocation. QEMU's `microbit` machine
//! emulates exactly these blocks (UART, TIMER0-2, RNG, NVMC with FICR/UICR, GPIO); the
//! RTC, the watchdog, the radio and the ECB (AES) block are not emulated there, so
//! the clock is TIMER0 and [`Watchdog::feed`] does nothing.

use core::cell::Cell;

use nrf51_pac::{GPIO, NVMC, RNG, TIMER0, UART0};
use zepto_kernel::hal::{
    BusId, Clock, McuSleep, PacketBus, Pins, Random, Storage, Transceiver, Waiter, WaitingFor,
    WakeReason, Watchdog,
};
use zepto_kernel::sadlp;
use zepto_kernel::Error;

/// Largest packet the link carries (SASP header, SAGDP and SACCP headers, the
/// program or reply, the SASP tag).
pub const MTU: usize = crate::config::MTU;

/// micro:bit edge connector UART pins (to the interface MCU's USB serial).
const UART_TX_PIN: u32 = 24;
const UART_RX_PIN: u32 = 25;
/// BAUDRATE register value for 115200 baud.
const BAUD_115200: u32 = 0x01D7_E000;

/// LED matrix: rows P0.13-15 (drive high to light), columns P0.4-12 (drive low).
const LED_ROWS: u32 = 0b111 << 13;
const LED_COLS: u32 = 0x1FF << 4;

/// Flash page size of the nRF51.
const PAGE: usize = 1024;
/// The two pages holding the nonce records: one page per 32-byte record slot.
const STORAGE_PAGES: [usize; 2] = [0x3_F800, 0x3_FC00];
/// Bytes of one logical record slot (the storage's write granularity): a nonce
/// record (`nonce_store::RECORD_LEN`, 20 bytes) padded to whole words.
const SLOT: usize = 32;
/// Record copies one page holds before it is erased.
const ENTRIES: usize = PAGE / SLOT;

/// The board and the SADLP receive state (no frame counters: nothing on the board
/// reads them).
pub struct Board {
    uart: UART0,
    timer: TIMER0,
    gpio: GPIO,
    nvmc: NVMC,
    rng: RNG,
    rx: sadlp::Decoder<{ sadlp::decoder_buffer_len(MTU) }, ()>,
    last_ticks: Cell<u32>,
    frac_us: Cell<u32>,
    ms: Cell<u64>,
}

impl Board {
    /// Takes the peripherals and sets them up: UART at 115200 8N1, TIMER0 counting
    /// microseconds, LED matrix pins as outputs (LEDs off), RNG running.
    pub fn new(uart: UART0, timer: TIMER0, gpio: GPIO, nvmc: NVMC, rng: RNG) -> Self {
        // SAFETY (all `bits` writes below): raw values documented in the nRF51
        // reference manual for these registers.
        unsafe {
            gpio.outset.write(|w| w.bits(UART_TX_PIN_MASK | LED_COLS));
            gpio.dirset
                .write(|w| w.bits(UART_TX_PIN_MASK | LED_ROWS | LED_COLS));
            uart.pseltxd.write(|w| w.bits(UART_TX_PIN));
            uart.pselrxd.write(|w| w.bits(UART_RX_PIN));
            uart.baudrate.write(|w| w.bits(BAUD_115200));
            uart.enable.write(|w| w.bits(4));
            uart.tasks_starttx.write(|w| w.bits(1));
            uart.tasks_startrx.write(|w| w.bits(1));
            // Timer mode, 32 bit, 16 MHz / 2^4 = 1 MHz.
            timer.mode.write(|w| w.bits(0));
            timer.bitmode.write(|w| w.bits(3));
            timer.prescaler.write(|w| w.bits(4));
            timer.tasks_clear.write(|w| w.bits(1));
            timer.tasks_start.write(|w| w.bits(1));
            rng.tasks_start.write(|w| w.bits(1));
            // Wake-up sources of `wait_for` (interrupts stay masked by PRIMASK).
            uart.intenset.write(|w| w.bits(1 << 2));
            timer.intenset.write(|w| w.bits(1 << 17));
            core::ptr::write_volatile(NVIC_ISER as *mut u32, WAKE_IRQS);
        }
        Self {
            uart,
            timer,
            gpio,
            nvmc,
            rng,
            rx: sadlp::Decoder::uncounted(),
            last_ticks: Cell::new(0),
            frac_us: Cell::new(0),
            ms: Cell::new(0),
        }
    }

    fn ticks(&self) -> u32 {
        // SAFETY: CAPTURE[0] task trigger.
        self.timer.tasks_capture[0].write(|w| unsafe { w.bits(1) });
        self.timer.cc[0].read().bits()
    }

    fn rx_byte(&mut self) -> Option<u8> {
        if self.uart.events_rxdrdy.read().bits() == 0 {
            return None;
        }
        // SAFETY: clearing an event register.
        self.uart.events_rxdrdy.write(|w| unsafe { w.bits(0) });
        Some(self.uart.rxd.read().bits() as u8)
    }

    /// Writes one byte to the UART and waits until it left. (Out of line: the
    /// frame encoder writes bytes from five places.)
    #[inline(never)]
    pub fn tx_byte(&mut self, b: u8) {
        // SAFETY: clearing an event, writing the data register.
        unsafe {
            self.uart.events_txdrdy.write(|w| w.bits(0));
            self.uart.txd.write(|w| w.bits(u32::from(b)));
        }
        while self.uart.events_txdrdy.read().bits() == 0 {}
    }

    /// Writes text to the UART (boot banner); SADLP receivers skip it.
    pub fn tx_text(&mut self, s: &[u8]) {
        for b in s {
            self.tx_byte(*b);
        }
    }

    /// Sends one SADLP frame (`0x00 | COBS(packet | CRC-16 LE) | 0x00`), encoding
    /// on the fly so no frame buffer is needed.
    fn tx_frame(&mut self, packet: &[u8]) {
        let crc = sadlp::CRC16.checksum(packet).to_le_bytes();
        let len = packet.len() + crc.len();
        let at = |i: usize| -> u8 {
            match packet.get(i) {
                Some(b) => *b,
                None => crc.get(i - packet.len()).copied().unwrap_or(0),
            }
        };
        self.tx_byte(sadlp::DELIMITER);
        let mut i = 0;
        loop {
            // One COBS block: up to 254 non-zero bytes, ended by a zero or the end
            // (`at(len)` is 0: the end is a zero that is not sent).
            let mut run = 0;
            while run < 254 && at(i + run) != 0 {
                run += 1;
            }
            self.tx_byte(run as u8 + 1);
            for k in i..i + run {
                self.tx_byte(at(k));
            }
            i += run;
            if run < 254 {
                // Skip the zero the block code stands for; the end's ends the frame
                // (after a trailing zero, an empty last block stands for the end).
                i += 1;
                if i > len {
                    break;
                }
            } else if i == len {
                break;
            }
        }
        self.tx_byte(sadlp::DELIMITER);
    }

    fn storage_page(slot: usize) -> Result<usize, Error> {
        STORAGE_PAGES.get(slot).copied().ok_or(Error::Storage)
    }

    fn flash_word(addr: usize) -> u32 {
        // SAFETY: `addr` is a word-aligned address inside the chip's flash.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    fn entry_blank(entry: usize) -> bool {
        (0..SLOT / 4).all(|w| Self::flash_word(entry + 4 * w) == u32::MAX)
    }

    /// Index of the first erased entry of a slot's page (`ENTRIES` if full).
    fn first_blank(page: usize) -> usize {
        (0..ENTRIES)
            .find(|e| Self::entry_blank(page + e * SLOT))
            .unwrap_or(ENTRIES)
    }

    fn nvmc_wait(&self) {
        while self.nvmc.ready.read().bits() == 0 {}
    }

    fn erase_page(&mut self, page: usize) {
        // SAFETY: NVMC CONFIG = EEN, erase a page inside the flash, CONFIG = REN.
        unsafe {
            self.nvmc.config.write(|w| w.bits(2));
            self.nvmc_wait();
            self.nvmc.erasepage().write(|w| w.bits(page as u32));
            self.nvmc_wait();
            self.nvmc.config.write(|w| w.bits(0));
        }
        self.nvmc_wait();
    }

    fn program_words(&mut self, addr: usize, data: &[u8]) {
        // SAFETY: NVMC CONFIG = WEN, then word writes to erased flash words.
        self.nvmc.config.write(|w| unsafe { w.bits(1) });
        self.nvmc_wait();
        for (i, w) in data.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            unsafe { core::ptr::write_volatile((addr + 4 * i) as *mut u32, v) };
            self.nvmc_wait();
        }
        // SAFETY: back to read-only.
        self.nvmc.config.write(|w| unsafe { w.bits(0) });
        self.nvmc_wait();
    }
}

const UART_TX_PIN_MASK: u32 = 1 << UART_TX_PIN;

/// Marks for instruction traces (`perf-trace.sh`): called when a whole packet was
/// received, and when one was sent. Kept out of line so their addresses show in a
/// trace.
#[inline(never)]
fn mark_packet_in() {
    cortex_m::asm::nop();
}

/// See [`mark_packet_in`].
#[inline(never)]
fn mark_packet_out() {
    // Two NOPs, so the linker does not fold it into `mark_packet_in`.
    cortex_m::asm::nop();
    cortex_m::asm::nop();
}

impl Clock for Board {
    fn now_ms(&self) -> u64 {
        let t = self.ticks();
        let us = self.frac_us.get() + t.wrapping_sub(self.last_ticks.get());
        self.last_ticks.set(t);
        let (q, r) = div_1000(us);
        self.ms.set(self.ms.get() + u64::from(q));
        self.frac_us.set(r);
        self.ms.get()
    }
}

/// `(x / 1000, x % 1000)` by shift and subtract: the Cortex-M0 has no divide
/// instruction, and this is the firmware's only division (the library routine
/// it would otherwise link is about 400 bytes).
fn div_1000(x: u32) -> (u32, u32) {
    let (mut q, mut r) = (0u32, 0u32);
    for i in (0..32).rev() {
        r = (r << 1) | ((x >> i) & 1);
        q <<= 1;
        if r >= 1000 {
            r -= 1000;
            q |= 1;
        }
    }
    (q, r)
}

/// NVIC set-enable and clear-pending registers; UART0 is IRQ 2, TIMER0 IRQ 8.
const NVIC_ISER: usize = 0xE000_E100;
const NVIC_ICPR: usize = 0xE000_E280;
const WAKE_IRQS: u32 = (1 << 2) | (1 << 8);

/// Sleeps with WFI until a byte arrives (UART RXDRDY) or the timeout passes (TIMER0
/// COMPARE[1]). Interrupts stay masked (PRIMASK) for the whole program: a pending
/// interrupt ends WFI without running a handler. Waits for pins poll instead, as
/// QEMU does not emulate the GPIOTE block.
impl Waiter for Board {
    fn wait_for(&mut self, what: &WaitingFor) -> WakeReason {
        let start = self.now_ms();
        let polling = what.pins().next().is_some();
        loop {
            // SAFETY: NVIC clear-pending, then arming TIMER0 CC[1] and its event.
            unsafe { core::ptr::write_volatile(NVIC_ICPR as *mut u32, WAKE_IRQS) };
            if self.uart.events_rxdrdy.read().bits() != 0 {
                return WakeReason::PacketArrived;
            }
            for (pin, value) in what.pins() {
                if self.read_pin(pin) == Ok(value) {
                    return WakeReason::Pin(pin);
                }
            }
            let mut left_us = u32::MAX / 2;
            if let Some(t) = what.timeout_ms {
                let gone = self.now_ms() - start;
                if gone >= u64::from(t) {
                    return WakeReason::Timeout;
                }
                // Below u32::MAX (gone < t); the product in 32 bits where it is
                // below the cap.
                let left = (u64::from(t) - gone) as u32;
                if left <= left_us / 1000 {
                    left_us = left * 1000;
                }
            }
            if !polling {
                self.timer.events_compare[1].write(|w| unsafe { w.bits(0) });
                let at = self.ticks().wrapping_add(left_us);
                self.timer.cc[1].write(|w| unsafe { w.bits(at) });
                cortex_m::asm::wfi();
            }
        }
    }
}

impl PacketBus for Board {
    fn receive(&mut self, _bus: BusId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        while let Some(b) = self.rx_byte() {
            if let Some(p) = self.rx.push(b) {
                let dst = buf.get_mut(..p.len()).ok_or(Error::BufferTooSmall)?;
                dst.copy_from_slice(p);
                mark_packet_in();
                return Ok(Some(p.len()));
            }
        }
        Ok(None)
    }

    fn send(&mut self, _bus: BusId, packet: &[u8]) -> Result<(), Error> {
        self.tx_frame(packet);
        mark_packet_out();
        Ok(())
    }
}

/// The nonce records live in two flash pages, one per 16-byte record slot (the
/// storage's write granularity). Each write of a slot programs the next erased
/// 16-byte entry of its page; the newest entry is the slot's value. A full page is
/// erased before its next write, so a page sees one erase per 64 record writes. A
/// power cut during that erase loses only the slot being written, which the nonce
/// store tolerates (it writes the two slots alternately).
impl Storage for Board {
    fn size(&self) -> usize {
        STORAGE_PAGES.len() * SLOT
    }

    fn write_granularity(&self) -> usize {
        SLOT
    }

    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i;
            let page = Self::storage_page(a / SLOT)?;
            let n = Self::first_blank(page);
            *b = if n == 0 {
                0xFF
            } else {
                let word = Self::flash_word(page + (n - 1) * SLOT + ((a % SLOT) & !3));
                (word >> (8 * (a % 4))) as u8
            };
        }
        Ok(())
    }

    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        if !addr.is_multiple_of(SLOT) || !data.len().is_multiple_of(SLOT) {
            return Err(Error::Storage);
        }
        for (k, rec) in data.chunks_exact(SLOT).enumerate() {
            let page = Self::storage_page(addr / SLOT + k)?;
            let mut n = Self::first_blank(page);
            if n == ENTRIES {
                self.erase_page(page);
                n = 0;
            }
            self.program_words(page + n * SLOT, rec);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Nobody else uses this flash: nothing to lock.
    fn lock(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn unlock(&mut self) {}
}

impl Random for Board {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for b in buf {
            while self.rng.events_valrdy.read().bits() == 0 {}
            // SAFETY: clearing an event register.
            self.rng.events_valrdy.write(|w| unsafe { w.bits(0) });
            *b = self.rng.value.read().bits() as u8;
        }
        Ok(())
    }
}

impl Watchdog for Board {
    fn feed(&mut self) {}
}

impl Pins for Board {
    /// Pins are the nRF51's P0.0-P0.31. An output pin reads back its driven level.
    fn read_pin(&mut self, pin: u8) -> Result<bool, Error> {
        let mask = 1u32.checked_shl(u32::from(pin)).ok_or(Error::Unsupported)?;
        let reg = if self.gpio.dir.read().bits() & mask != 0 {
            self.gpio.out.read().bits()
        } else {
            self.gpio.in_.read().bits()
        };
        Ok(reg & mask != 0)
    }

    fn write_pin(&mut self, pin: u8, value: bool) -> Result<(), Error> {
        let mask = 1u32.checked_shl(u32::from(pin)).ok_or(Error::Unsupported)?;
        if pin as u32 == UART_TX_PIN || pin as u32 == UART_RX_PIN {
            return Err(Error::Unsupported);
        }
        // SAFETY: setting bits of the GPIO set/clear and direction registers.
        unsafe {
            if value {
                self.gpio.outset.write(|w| w.bits(mask));
            } else {
                self.gpio.outclr.write(|w| w.bits(mask));
            }
            self.gpio.dirset.write(|w| w.bits(mask));
        }
        Ok(())
    }
}

impl Transceiver for Board {
    /// The UART is always on.
    fn set_receiver(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }

    fn set_transmitter(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
}

impl McuSleep for Board {
    /// Waits on the timer (RAM is kept); a packet does not end the sleep.
    fn mcu_sleep(&mut self, ms: u32) -> Result<(), Error> {
        let start = self.now_ms();
        while self.now_ms() - start < u64::from(ms) {}
        Ok(())
    }
}

/// The nRF51's AES-128 ECB block, SASP's cipher in the `hw-aes` build. QEMU's
/// `microbit` machine does not emulate it (its registers read 0 there, and this
/// would wait forever): that build runs on a board only.
#[cfg(feature = "hw-aes")]
pub struct Ecb;

#[cfg(feature = "hw-aes")]
impl zepto_kernel::hwaes::AesBlock for Ecb {
    fn encrypt(key: &[u8; 16], block: &mut [u8; 16]) {
        // What ECBDATAPTR points to: key, cleartext, ciphertext.
        let mut data = [0u8; 48];
        data[..16].copy_from_slice(key);
        data[16..32].copy_from_slice(block);
        // SAFETY: nothing else uses the ECB block (the radio and its CCM are off),
        // and `data` lives until the block has written the ciphertext.
        let ecb = unsafe { &*nrf51_pac::ECB::ptr() };
        ecb.events_endecb.write(|w| unsafe { w.bits(0) });
        ecb.events_errorecb.write(|w| unsafe { w.bits(0) });
        ecb.ecbdataptr
            .write(|w| unsafe { w.bits(data.as_mut_ptr() as u32) });
        ecb.tasks_startecb.write(|w| unsafe { w.bits(1) });
        while ecb.events_endecb.read().bits() == 0 {
            if ecb.events_errorecb.read().bits() != 0 {
                ecb.events_errorecb.write(|w| unsafe { w.bits(0) });
                ecb.tasks_startecb.write(|w| unsafe { w.bits(1) });
            }
        }
        for (i, b) in block.iter_mut().enumerate() {
            // SAFETY: in bounds (32 + i < 48); read volatile, as the block wrote it.
            *b = unsafe { core::ptr::read_volatile(data.as_ptr().add(32 + i)) };
        }
    }
}
