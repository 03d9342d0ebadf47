//! # zepto-kernel
//!
//! The SmartAnthill "Zepto OS" device stack in Rust: `no_std`, no allocation, no
//! panics on any input. It holds
//!
//! * [`encoding`]: Encoded-Unsigned/Signed-Int, Half-Float and little-endian fields;
//! * [`heap`]: the Zepto Heap of movable request/reply blocks and its parsers;
//! * [`hal`]: the traits an OS port implements;
//! * [`error`]: the kernel's [`Error`] and the protocol handlers' [`HandlerOutcome`];
//! * [`cipher`]: the block ciphers (AES-128, Speck-128/128) behind one trait;
//! * [`eax`]: EAX and CMAC over them;
//! * [`sasp`]: the security layer (EAX over AES-128 or Speck-128/128);
//! * [`nonce_store`]: SASP nonces persisted with few storage writes;
//! * [`sadlp`]: framing for byte links (COBS + CRC-16);
//! * [`datagram`]: peer addressing for datagram buses (UDP): replies go to the
//!   authenticated peer only;
//! * [`sagdp`]: the guaranteed-delivery layer (chains, resends), device and client;
//! * [`saccp`]: the command layer between SAGDP and the Zepto VM, device and client;
//! * [`vm`]: the Zepto VM and its client-side instruction/reply codecs;
//! * [`plugins`]: the plugin trait and the built-in plugins;
//! * [`service`]: the local service protocol (load and run programs for processes
//!   on the same device).
//!
//! With the `test-hal` feature, `testhal` provides an in-memory port used by tests
//! and by the host simulator.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cipher;
pub mod client;
pub mod datagram;
pub mod eax;
pub mod encoding;
pub mod error;
pub mod hal;
pub mod heap;
pub mod hwaes;
pub mod nonce_store;
pub mod plugins;
pub mod pump;
pub mod saccp;
pub mod sadlp;
pub mod sagdp;
pub mod sasp;
pub mod service;
#[cfg(feature = "test-hal")]
pub mod testhal;
pub mod vm;

pub use error::{Error, HandlerOutcome};
pub use heap::{Handle, Heap, HeapMem, Parser, Part};

/// Adds one to a statistics counter (stopping at the top). One copy of the code for
/// all the counters of the layers.
#[inline(never)]
pub(crate) fn count(c: &mut u32) {
    *c = c.saturating_add(1);
}
