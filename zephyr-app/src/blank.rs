//! Where blank nonce records start (`CONFIG_ZEPTO_BLANK_START_*`, `docs/security.md`).
//!
//! A device whose storage holds no records for its key must start above every nonce
//! the key was used with before:
//!
//! * with an entropy driver: a random high start (`BlankStart::RandomHigh`);
//! * under ARM semihosting without one: the clock floor of the host's wall clock
//!   (`BlankStart::Floor`, the host's rule, read in whole seconds). The device then
//!   sends nothing until that second has passed ([`Start::hold_until`]), so the
//!   floor is never ahead of the clock while it sends, and two blank starts never
//!   share a floor;
//! * otherwise: no start (`BlankStart::Refuse`); the network device stays off.
//!
//! Zephyr's timer-based test generator (`CONFIG_TEST_RANDOM_GENERATOR`) repeats its
//! output from boot to boot, so it never stands in for the random start.

use core::ffi::c_int;

use zepto_kernel::nonce_store::{self, BlankStart};

extern "C" {
    fn zepto_wall_clock_s(secs: *mut u64) -> c_int;
}

/// Why a blank store cannot start on this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The build has neither an entropy driver nor a clock to trust.
    NoSource,
    /// The host clock read this many seconds since 1970: before 2024 or after 2093.
    ClockOutOfRange(u64),
    /// The host clock could not be read.
    NoClock,
}

/// How blank records start on this boot.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// The kernel's policy for blank records.
    pub blank: BlankStart,
    /// For a clock floor: the clock's second at the floor. A store that started
    /// blank sends nothing until the clock reads a later second.
    pub hold_until: Option<u64>,
    /// Why `blank` is `Refuse`.
    pub refusal: Option<Refusal>,
}

/// The host's wall clock in seconds since 1970 (semihosting SYS_TIME), if the build
/// trusts one.
pub fn wall_clock_s() -> Option<u64> {
    let mut secs = 0u64;
    // SAFETY: `secs` is valid for a write of one u64.
    (unsafe { zepto_wall_clock_s(&mut secs) } == 0).then_some(secs)
}

/// The blank-start policy of this build, with the clock read now.
pub fn choose() -> Start {
    if cfg!(CONFIG_ZEPTO_BLANK_START_RANDOM_HIGH) {
        return Start {
            blank: BlankStart::RandomHigh,
            hold_until: None,
            refusal: None,
        };
    }
    if !cfg!(CONFIG_ZEPTO_BLANK_START_HOST_CLOCK) {
        return refuse(Refusal::NoSource);
    }
    let Some(secs) = wall_clock_s() else {
        return refuse(Refusal::NoClock);
    };
    match secs.checked_mul(1000).and_then(nonce_store::clock_floor) {
        Some(floor) => Start {
            blank: BlankStart::Floor(floor),
            hold_until: Some(secs),
            refusal: None,
        },
        None => refuse(Refusal::ClockOutOfRange(secs)),
    }
}

fn refuse(why: Refusal) -> Start {
    Start {
        blank: BlankStart::Refuse,
        hold_until: None,
        refusal: Some(why),
    }
}
