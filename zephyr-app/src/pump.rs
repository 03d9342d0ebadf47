//! The pump thread's body.
//!
//! [`zepto_main_pump`] is where the Zepto main pump (zepto-os.rst "Main Loop": SADLP
//! framing, SASP, SAGDP, SACCP and the Zepto VM over one heap handle) runs on Zephyr.
//! Until that pump is in zepto-kernel, it runs [`echo_pump`], which proves the
//! receive path (interrupt, ring, semaphore, thread) and the transmit path: every
//! frame received on the packet UART is sent back unchanged.

use heapless::Vec;
use zephyr::kconfig;
use zephyr::printkln;
use zepto_kernel::hal::{Clock, Random, Waiter, WaitingFor, Watchdog};

use crate::hal::ZephyrHal;

/// Frame delimiter on the packet UART (SADLP byte framing: `0x00 | COBS(...) | 0x00`).
const DELIMITER: u8 = 0x00;

/// Largest packet (`CONFIG_ZEPTO_MAX_PACKET_SIZE`).
const MAX_PACKET: usize = kconfig::CONFIG_ZEPTO_MAX_PACKET_SIZE as usize;

/// Largest frame body between delimiters: COBS of the packet and its 2-byte CRC.
const MAX_FRAME: usize = {
    let n = MAX_PACKET + 2;
    n + n / 254 + 1
};

/// How long the pump sleeps when nothing happens (it still feeds the watchdog).
const IDLE_WAIT_MS: u32 = 1000;

/// Runs the device: the Zepto main pump goes here. Never returns.
pub fn zepto_main_pump(hal: &mut ZephyrHal) -> ! {
    let mut seed = [0u8; 4];
    let random = match hal.random.fill_random(&mut seed) {
        Ok(()) => "yes",
        Err(_) => "no",
    };
    printkln!(
        "zepto: pump running (t={} ms, random source: {}, watchdog: {})",
        hal.clock.now_ms(),
        random,
        if hal.watchdog.is_armed() {
            "armed"
        } else {
            "none"
        },
    );
    echo_pump(hal)
}

/// Stand-in pump: echoes every non-empty frame received, delimiters included.
/// Frames longer than [`MAX_FRAME`] are dropped.
pub fn echo_pump(hal: &mut ZephyrHal) -> ! {
    let mut frame: Vec<u8, MAX_FRAME> = Vec::new();
    let mut overlong = false;
    let mut echoed: u32 = 0;
    let mut reported_drops: u32 = 0;
    loop {
        hal.watchdog.feed();
        let _ = hal.waiter.wait_for(&WaitingFor::time(IDLE_WAIT_MS));
        let mut chunk = [0u8; 32];
        loop {
            let n = hal.port.read(&mut chunk);
            if n == 0 {
                break;
            }
            for &b in chunk.iter().take(n) {
                if b != DELIMITER {
                    overlong |= frame.push(b).is_err();
                    continue;
                }
                if overlong {
                    printkln!("zepto: dropped an over-long frame");
                } else if !frame.is_empty() {
                    hal.port.write(&[DELIMITER]);
                    hal.port.write(&frame);
                    hal.port.write(&[DELIMITER]);
                    echoed = echoed.wrapping_add(1);
                    printkln!(
                        "zepto: echoed frame #{} ({} bytes) at {} ms",
                        echoed,
                        frame.len(),
                        hal.clock.now_ms()
                    );
                }
                frame.clear();
                overlong = false;
            }
        }
        let dropped = crate::uart::rx_dropped();
        if dropped != reported_drops {
            printkln!("zepto: {} received bytes dropped (ring full)", dropped);
            reported_drops = dropped;
        }
    }
}
