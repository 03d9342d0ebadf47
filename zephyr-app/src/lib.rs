//! Zepto OS as a Zephyr application.
//!
//! * `uart` (UART transport): the UART chosen as `zepto,uart` in the devicetree:
//!   interrupt-driven receive into a ring buffer that wakes the pump thread through a
//!   semaphore (or a poll thread on drivers without an interrupt API), polled
//!   transmit, SADLP framing;
//! * `udp` (UDP transport): datagrams through Zephyr's sockets, replies to the
//!   authenticated peer;
//! * [`blank`]: where blank nonce records start (random, the host's clock, or not);
//! * [`hal`]: zepto-kernel's HAL traits on Zephyr (clock, waiter, SADLP packet bus,
//!   nonce storage, pins, random, watchdog, transceiver, MCU sleep);
//! * [`pump`]: the pump thread's body, [`pump::zepto_main_pump`]: the network device
//!   and the local service;
//! * [`service`]: local clients (other threads) and the Rust client API;
//! * [`pm`]: power management hooks;
//! * `pm_test` (only with `CONFIG_ZEPTO_PM_TEST_HOOKS`): feeds a network command for
//!   the PM test scenario.
#![no_std]
// Zephyr's Kconfig options appear as `cfg(CONFIG_...)`; which exist depends on the build.
#![allow(unexpected_cfgs)]

#[macro_use]
pub mod say;
pub mod blank;
pub mod hal;
pub mod pm;
#[cfg(CONFIG_ZEPTO_PM_TEST_HOOKS)]
pub mod pm_test;
pub mod pump;
pub mod service;
#[cfg(not(CONFIG_ZEPTO_TRANSPORT_UDP))]
pub mod uart;
#[cfg(CONFIG_ZEPTO_TRANSPORT_UDP)]
pub mod udp;

use zephyr::kconfig;

extern "C" {
    fn zepto_pump_start();
}

/// Entry point called by Zephyr's `main()`: announces the build and starts the pump
/// thread (`zepto_pump` in glue.c: `CONFIG_ZEPTO_PUMP_STACK_SIZE`,
/// `CONFIG_ZEPTO_PUMP_PRIORITY`).
#[no_mangle]
extern "C" fn rust_main() {
    say!(
        "zepto: Zepto OS on ",
        kconfig::CONFIG_BOARD,
        " (VM level ",
        kconfig::CONFIG_ZEPTO_VM_LEVEL,
        ", heap ",
        kconfig::CONFIG_ZEPTO_HEAP_SIZE,
        " B, max packet ",
        kconfig::CONFIG_ZEPTO_MAX_PACKET_SIZE,
        " B)"
    );
    // SAFETY: plain call into glue.c, once.
    unsafe { zepto_pump_start() };
}

/// The pump thread's body: opens the packet link and the HAL, then runs the pump
/// forever.
#[no_mangle]
pub extern "C" fn zepto_pump_entry() {
    let Some(link) = hal::Link::open() else {
        say!("zepto: packet link not ready (UART chosen as zepto,uart, or UDP socket); pump not started");
        return;
    };
    let mut hal = hal::ZephyrHal::new(link);
    pump::zepto_main_pump(&mut hal);
}
