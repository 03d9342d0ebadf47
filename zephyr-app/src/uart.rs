//! The UART that carries Zepto packets: the devicetree node chosen as `zepto,uart`.
//!
//! Receive: with `CONFIG_UART_INTERRUPT_DRIVEN` the UART interrupt handler moves the
//! received bytes into a ring buffer and gives the pump's wake semaphore (glue.c);
//! without it (drivers with no interrupt API) a poll thread does the same every
//! `CONFIG_ZEPTO_UART_POLL_INTERVAL_MS`. The pump thread sleeps on that semaphore and
//! drains the ring with [`UartPort::read`]. Transmit is polled.
//!
//! [`UartPort`] moves bytes only; [`UartLink`] finds the SADLP frames in that byte
//! stream (the packet bus of the UART transport, `CONFIG_ZEPTO_TRANSPORT_UART`).

use core::cell::RefCell;
#[cfg(CONFIG_UART_INTERRUPT_DRIVEN)]
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering};

use critical_section::Mutex;
use heapless::Deque;
use zephyr::kconfig;
use zephyr::raw::device;
use zepto_kernel::sadlp;
use zepto_kernel::Error;

use crate::hal::MAX_PACKET;

/// SADLP decoder buffer for [`MAX_PACKET`].
const DECODER_LEN: usize = sadlp::decoder_buffer_len(MAX_PACKET);

/// Largest encoded frame for [`MAX_PACKET`].
const FRAME_LEN: usize = sadlp::encoded_len(MAX_PACKET);

/// Capacity of the receive ring (`CONFIG_ZEPTO_UART_RX_RING_SIZE`).
const RING_SIZE: usize = kconfig::CONFIG_ZEPTO_UART_RX_RING_SIZE as usize;

/// Bytes received and not yet read by the pump; filled in interrupt (or poll thread)
/// context, drained by the pump thread. Every access borrows it inside a critical
/// section and for that section only, so a borrow never finds it borrowed; the
/// accesses use `try_borrow*` all the same, which links no panic path.
static RX_RING: Mutex<RefCell<Deque<u8, RING_SIZE>>> = Mutex::new(RefCell::new(Deque::new()));

/// Bytes dropped because the ring was full.
static RX_DROPPED: AtomicU32 = AtomicU32::new(0);

extern "C" {
    /// The `zepto,uart` device if its driver is ready, else NULL (glue.c).
    fn zepto_uart_device() -> *const device;
    /// Gives the pump's wake semaphore (limit 1); callable from interrupts (glue.c).
    fn zepto_wake_give();
}

/// Appends received bytes to the ring (interrupt or poll-thread context), counting
/// what does not fit, and wakes the pump.
pub(crate) fn push_received(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let dropped = critical_section::with(|cs| match RX_RING.borrow(cs).try_borrow_mut() {
        Ok(mut ring) => bytes
            .iter()
            .filter(|b| ring.push_back(**b).is_err())
            .count(),
        Err(_) => bytes.len(),
    });
    if dropped > 0 {
        RX_DROPPED.fetch_add(
            u32::try_from(dropped).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }
    // SAFETY: plain call into glue.c; k_sem_give may be called from an ISR.
    unsafe { zepto_wake_give() };
}

/// True if received bytes are waiting in the ring.
pub fn rx_pending() -> bool {
    critical_section::with(|cs| {
        RX_RING
            .borrow(cs)
            .try_borrow()
            .is_ok_and(|ring| !ring.is_empty())
    })
}

/// Bytes dropped so far because the pump did not drain the ring in time.
pub fn rx_dropped() -> u32 {
    RX_DROPPED.load(Ordering::Relaxed)
}

/// The opened packet UART.
pub struct UartPort {
    dev: *const device,
}

impl UartPort {
    /// Opens the `zepto,uart` device and starts receiving; `None` if its driver is not
    /// ready. Call once.
    pub fn open() -> Option<UartPort> {
        // SAFETY: glue.c returns a pointer to a static device object, or NULL.
        let dev = unsafe { zepto_uart_device() };
        if dev.is_null() {
            return None;
        }
        start_receive(dev);
        Some(UartPort { dev })
    }

    /// Moves up to `buf.len()` received bytes into `buf`; returns how many.
    pub fn read(&self, buf: &mut [u8]) -> usize {
        critical_section::with(|cs| {
            let Ok(mut ring) = RX_RING.borrow(cs).try_borrow_mut() else {
                return 0;
            };
            let mut n = 0;
            for slot in buf.iter_mut() {
                match ring.pop_front() {
                    Some(b) => {
                        *slot = b;
                        n += 1;
                    }
                    None => break,
                }
            }
            n
        })
    }

    /// Sends `bytes`, waiting until the UART has taken each one.
    pub fn write(&self, bytes: &[u8]) {
        for b in bytes {
            // SAFETY: `dev` is the ready device returned by glue.c; polled output is
            // allowed from thread context at any time.
            unsafe { zephyr::raw::uart_poll_out(self.dev, *b) };
        }
    }
}

/// The packet bus of the UART transport: SADLP frames on the `zepto,uart` UART.
pub struct UartLink {
    port: UartPort,
    decoder: sadlp::Decoder<DECODER_LEN>,
    partial: bool,
}

impl UartLink {
    /// Opens the `zepto,uart` UART; `None` if its driver is not ready.
    pub fn open() -> Option<UartLink> {
        Some(UartLink {
            port: UartPort::open()?,
            decoder: sadlp::Decoder::new(),
            partial: false,
        })
    }

    /// For the start-up message.
    pub fn describe(&self) -> &'static str {
        "SADLP frames on the zepto,uart UART"
    }

    /// True if received bytes wait in the ring.
    pub fn rx_pending(&self) -> bool {
        rx_pending()
    }

    /// True while a frame is partly received or bytes wait (the link is busy).
    pub fn busy(&self) -> bool {
        self.partial || rx_pending()
    }

    /// Forgets a half-received frame whose rest did not come (the line went quiet),
    /// unless more bytes are already waiting.
    pub fn abandon_partial_frame(&mut self) {
        if !rx_pending() {
            self.decoder.reset();
            self.partial = false;
        }
    }

    /// Moves received bytes from the ring into the SADLP decoder, one at a time,
    /// until a frame completes; bytes after it stay in the ring for the next call.
    pub fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
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

    /// Sends one packet as a SADLP frame.
    pub fn send(&mut self, packet: &[u8]) -> Result<(), Error> {
        let mut frame = [0u8; FRAME_LEN];
        let n = sadlp::encode(packet, &mut frame)?;
        self.port
            .write(frame.get(..n).ok_or(Error::BufferTooSmall)?);
        Ok(())
    }

    /// A UART has one peer: the packet's source needs no recording.
    pub fn accept_source(&mut self) {}

    /// Same as [`UartLink::send`]: there is only one peer.
    pub fn reply(&mut self, packet: &[u8]) -> Result<(), Error> {
        self.send(packet)
    }
}

#[cfg(CONFIG_UART_INTERRUPT_DRIVEN)]
fn start_receive(dev: *const device) {
    // SAFETY: `dev` is a ready UART device; the callback is a plain function with no
    // user data, and receive interrupts are enabled only after it is installed.
    unsafe {
        zephyr::raw::uart_irq_callback_user_data_set(dev, Some(uart_isr), core::ptr::null_mut());
        zephyr::raw::uart_irq_rx_enable(dev);
    }
}

/// UART interrupt handler: drains the receive FIFO into the ring.
#[cfg(CONFIG_UART_INTERRUPT_DRIVEN)]
extern "C" fn uart_isr(dev: *const device, _user_data: *mut c_void) {
    // SAFETY: Zephyr calls this with the device the callback was installed on, in
    // its interrupt context, where the FIFO calls are meant to be used.
    unsafe {
        if zephyr::raw::uart_irq_update(dev) <= 0 {
            return;
        }
        while zephyr::raw::uart_irq_rx_ready(dev) > 0 {
            let mut chunk = [0u8; 16];
            let n = zephyr::raw::uart_fifo_read(dev, chunk.as_mut_ptr(), chunk.len() as _);
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            push_received(chunk.get(..n).unwrap_or(&[]));
        }
    }
}

#[cfg(not(CONFIG_UART_INTERRUPT_DRIVEN))]
fn start_receive(_dev: *const device) {
    uart_poller().start();
}

/// Stack of the poll thread (`CONFIG_ZEPTO_UART_POLL_STACK_SIZE`).
#[cfg(not(CONFIG_UART_INTERRUPT_DRIVEN))]
const POLL_STACK_SIZE: usize = kconfig::CONFIG_ZEPTO_UART_POLL_STACK_SIZE as usize;

/// Poll thread for UARTs without an interrupt API: same ring, same signal.
#[cfg(not(CONFIG_UART_INTERRUPT_DRIVEN))]
#[zephyr::thread(stack_size = POLL_STACK_SIZE)]
fn uart_poller() {
    use zephyr::time::{sleep, Duration, Tick};
    // SAFETY: see `UartPort::open`.
    let dev = unsafe { zepto_uart_device() };
    if dev.is_null() {
        return;
    }
    let period = Duration::millis_at_least(kconfig::CONFIG_ZEPTO_UART_POLL_INTERVAL_MS as Tick);
    loop {
        let mut chunk = [0u8; 16];
        let mut n = 0;
        while let Some(slot) = chunk.get_mut(n) {
            // SAFETY: `dev` is a ready UART device; `slot` is a valid byte to write.
            if unsafe { zephyr::raw::uart_poll_in(dev, slot) } != 0 {
                break;
            }
            n += 1;
        }
        push_received(chunk.get(..n).unwrap_or(&[]));
        if n < chunk.len() {
            sleep(period);
        }
    }
}
