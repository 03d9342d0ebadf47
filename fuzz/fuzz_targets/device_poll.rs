//! Fuzz target: arbitrary packets into a whole device (see `fuzz/harness/device_poll.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/device_poll.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::device_poll(data));
