//! The Zepto local service (`zepto_kernel::service`) for a Zephyr application with
//! user-mode clients.
//!
//! This static library does not use the `zephyr` crate, so it builds with
//! `CONFIG_USERSPACE=y`. It runs in a supervisor thread created in C
//! (`src/service.c`) and reaches Zephyr only through the `extern "C"` functions
//! below, all defined there:
//!
//! * `zepto_us_next_request` waits for the next client request (the slot number) on
//!   the service's message queue, or for a timeout;
//! * `zepto_us_box` gives the service the slot's mailbox: the copy of the client's
//!   buffer that the system call made in the service's memory partition;
//! * `zepto_us_reply` hands the mailbox back and wakes the client;
//! * `zepto_us_uptime_ms` is the clock; `zepto_us_panic` stops the system.
//!
//! The service's state (its Zepto Heap, VM and client slots) is built in memory the
//! C side passes in, a buffer of the service's own memory partition, which no
//! client's memory domain contains.
#![no_std]

use core::ffi::c_int;
use core::mem::{size_of, MaybeUninit};

use zepto_kernel::hal::{Clock, McuSleep, Pins, Transceiver, WaitingFor, Watchdog};
use zepto_kernel::plugins::{Bodypart, Echo, Ping};
use zepto_kernel::service::{Service, Status};
use zepto_kernel::vm::{VmConfig, VmSmall};
use zepto_kernel::Error;

/// Client slots; must match `ZEPTO_SLOTS` in `include/zepto_service.h`.
pub const SLOTS: usize = 4;
/// Largest program a client can load.
pub const PROGRAM: usize = 64;
/// Bytes of the service's Zepto Heap.
pub const HEAP: usize = 256;
/// Heap handles (the running program; no PARALLEL).
pub const HANDLES: usize = 2;
/// How often a program waiting only for pins is looked at again.
const PIN_POLL_MS: i32 = 10;

type Vm = VmSmall<4, 8>;
type Svc<'t, 'p> = Service<'t, 'p, Vm, SLOTS, PROGRAM, HEAP, HANDLES>;

extern "C" {
    fn zepto_us_next_request(timeout_ms: i32) -> c_int;
    fn zepto_us_box(slot: c_int, len: *mut usize) -> *mut u8;
    fn zepto_us_reply(slot: c_int);
    fn zepto_us_uptime_ms() -> i64;
    fn zepto_us_panic() -> !;
}

/// The service's HAL: a clock; no pins, radio, MCU sleep or watchdog.
struct ZephyrHal;

impl Clock for ZephyrHal {
    fn now_ms(&self) -> u64 {
        // SAFETY: reads the kernel's uptime; no arguments.
        let t = unsafe { zepto_us_uptime_ms() };
        u64::try_from(t).unwrap_or(0)
    }
}

impl Pins for ZephyrHal {
    fn read_pin(&mut self, _pin: u8) -> Result<bool, Error> {
        Err(Error::Unsupported)
    }
    fn write_pin(&mut self, _pin: u8, _value: bool) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
}

impl Transceiver for ZephyrHal {
    fn set_receiver(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
    fn set_transmitter(&mut self, _on: bool) -> Result<(), Error> {
        Ok(())
    }
}

impl McuSleep for ZephyrHal {
    fn mcu_sleep(&mut self, _ms: u32) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
}

impl Watchdog for ZephyrHal {
    fn feed(&mut self) {}
}

/// Bytes the service's state needs in the memory given to
/// [`zepto_us_service_main`] (which must also be aligned for it; 8 bytes suffice on
/// 32-bit targets).
#[no_mangle]
pub extern "C" fn zepto_us_state_size() -> usize {
    size_of::<Svc<'static, 'static>>()
}

/// Milliseconds to wait for a request before looking at a waiting program again
/// (-1: only a request can change anything).
fn timeout_of(wait: Option<WaitingFor>) -> i32 {
    match wait {
        None => -1,
        Some(w) => {
            let t = w
                .timeout_ms
                .map_or(PIN_POLL_MS, |t| i32::try_from(t).unwrap_or(i32::MAX));
            if w.pins().next().is_some() {
                t.min(PIN_POLL_MS)
            } else {
                t
            }
        }
    }
}

/// Gives the mailbox of `slot` to the service.
fn mailbox<'a>(slot: c_int) -> Option<&'a mut [u8]> {
    let mut len = 0usize;
    // SAFETY: `len` is valid for a write; the C side checks `slot`.
    let p = unsafe { zepto_us_box(slot, &raw mut len) };
    if p.is_null() {
        return None;
    }
    // SAFETY: the C side returns the slot's mailbox, `len` bytes of the service's
    // partition, and touches it again only after `zepto_us_reply(slot)`: until then
    // this is the only reference to it.
    Some(unsafe { core::slice::from_raw_parts_mut(p, len) })
}

/// The service thread's body: builds the service in `mem` and answers client
/// requests for ever. Returns only if it cannot start: -1 if `mem` is too small or
/// misaligned, -2 if the service cannot be initialised.
///
/// # Safety
///
/// `mem` must point to `len` writable bytes that nothing else uses while the
/// thread runs (the service's partition).
#[no_mangle]
pub unsafe extern "C" fn zepto_us_service_main(mem: *mut u8, len: usize) -> c_int {
    #[allow(clippy::cast_ptr_alignment)] // checked with `is_aligned` below
    let ptr = mem.cast::<MaybeUninit<Svc<'_, '_>>>();
    if ptr.is_null() || len < zepto_us_state_size() || !ptr.is_aligned() {
        return -1;
    }
    let mut hal = ZephyrHal;
    let (mut ping, mut echo) = (Ping, Echo);
    let mut table = [Bodypart::new(1, &mut ping), Bodypart::new(2, &mut echo)];
    // SAFETY: `mem` is non-null, large and aligned enough (checked above) and ours
    // alone (the caller's promise); a `MaybeUninit` may hold any bytes.
    let state = unsafe { &mut *ptr };
    let svc = match Service::new(Vm::new(VmConfig::default()), &mut table, &mut hal) {
        Ok(s) => state.write(s),
        Err(_) => return -2,
    };
    // Slots whose client waits for the final reply of a PENDING program.
    let mut owed = [false; SLOTS];
    let mut wait = None;
    loop {
        // SAFETY: plain value argument.
        let slot = unsafe { zepto_us_next_request(timeout_of(wait)) };
        if let (Ok(s), Some(buf)) = (usize::try_from(slot), mailbox(slot)) {
            if svc.handle(s, buf, &mut hal) == Status::Pending {
                if let Some(o) = owed.get_mut(s) {
                    *o = true;
                }
            } else {
                // SAFETY: hands back the mailbox taken above; `buf` is not used again.
                unsafe { zepto_us_reply(slot) };
            }
        }
        let p = svc.poll(&mut hal);
        if let Some(s) = p.finished {
            let owed_now = owed.get_mut(s).is_some_and(core::mem::take);
            let c = c_int::try_from(s).unwrap_or(-1);
            match if owed_now { mailbox(c) } else { None } {
                Some(buf) => {
                    let _ = svc.deliver(s, buf);
                    // SAFETY: as above.
                    unsafe { zepto_us_reply(c) };
                }
                // Nobody waits for it: free the VM.
                None => {
                    let _ = svc.deliver(s, &mut []);
                }
            }
        }
        wait = p.wait;
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: stops the system; never returns.
    unsafe { zepto_us_panic() }
}
