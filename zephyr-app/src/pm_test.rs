//! Test support for the PM scenario (`CONFIG_ZEPTO_PM_TEST_HOOKS`, twister's
//! `zepto.app.pm.*`): builds a network command as a client would (zepto-kernel's
//! [`Client`], nonces in RAM starting above every random high start, so a device
//! that started blank accepts it) and feeds its SADLP frame into the packet UART's
//! receive ring in two parts, as if a peer sent it with a pause in the middle.
//! The device's reply goes out on the packet UART; nobody reads it.

use core::cell::RefCell;
use core::ffi::c_int;

use critical_section::Mutex;
use heapless::Vec;
use zepto_kernel::client::{Client, ClientConfig};
use zepto_kernel::hal::{Clock, Random, Storage};
use zepto_kernel::nonce_store::{BlankStart, RANDOM_SPAN, RANDOM_START};
use zepto_kernel::sadlp;
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::Error;

use crate::hal::ZephyrHal;

/// `SLEEP 200` then `EXEC 1 ""` (Ping): the program waits in the VM before it replies.
const PROGRAM: [u8; 6] = [0x04, 0xc8, 0x00, 0x02, 0x02, 0x00];

/// Longest frame of the test command.
const FRAME_MAX: usize = sadlp::encoded_len(96);

/// The frame being fed in.
static FRAME: Mutex<RefCell<Vec<u8, FRAME_MAX>>> = Mutex::new(RefCell::new(Vec::new()));

/// The test client's platform: uptime clock, nonces in RAM, the board's random source.
struct ClientHal {
    mem: [u8; 64],
}

impl Clock for ClientHal {
    fn now_ms(&self) -> u64 {
        u64::try_from(zephyr::sys::uptime_get()).unwrap_or(0)
    }
}

impl Storage for ClientHal {
    fn size(&self) -> usize {
        self.mem.len()
    }
    fn write_granularity(&self) -> usize {
        16
    }
    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        let src = self.mem.get(addr..addr + buf.len()).ok_or(Error::Storage)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        let dst = self
            .mem
            .get_mut(addr..addr + data.len())
            .ok_or(Error::Storage)?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn lock(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn unlock(&mut self) {}
}

impl Random for ClientHal {
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        ZephyrHal::random_bytes(buf)
    }
}

/// Builds the command's frame.
fn build() -> Result<Vec<u8, FRAME_MAX>, Error> {
    let key = crate::pump::key().ok_or(Error::ValueOutOfRange)?;
    let mut hal = ClientHal { mem: [0xff; 64] };
    let cfg = ClientConfig {
        blank: BlankStart::Floor(RANDOM_START + RANDOM_SPAN),
        ..ClientConfig::default()
    };
    let mut client: Client<DefaultCipher, 256, 4> = Client::new(&key, &mut hal, cfg)?;
    let packet = client.send_program(&mut hal, &PROGRAM)?;
    let mut frame = Vec::new();
    frame
        .resize(FRAME_MAX, 0)
        .map_err(|_| Error::BufferTooSmall)?;
    let n = sadlp::encode(packet, &mut frame)?;
    frame.truncate(n);
    Ok(frame)
}

/// Part 0: builds the frame and feeds its first half (the pump then waits for the
/// rest); part 1: feeds the rest. Returns 0, or -1 if the frame could not be built.
#[no_mangle]
pub extern "C" fn zepto_pm_test_feed(part: c_int) -> c_int {
    if part == 0 {
        let Ok(frame) = build() else {
            return -1;
        };
        critical_section::with(|cs| *FRAME.borrow_ref_mut(cs) = frame);
    }
    let frame = critical_section::with(|cs| FRAME.borrow_ref(cs).clone());
    let half = frame.len() / 2;
    let bytes = if part == 0 {
        frame.get(..half)
    } else {
        frame.get(half..)
    };
    crate::uart::push_received(bytes.unwrap_or(&[]));
    0
}
