//! Console lines without `core::fmt`: fixed text and hand-written decimal and
//! hexadecimal numbers, gathered in one small static buffer and written with
//! one console write per line (a longer line goes out in several writes).
//!
//! `core::fmt` (formatter, padding, `Debug` of every printed type) was about
//! 3.8 KB of the service's code. Here a line is built by a chain of calls on
//! [`Line`], a token without data, so each piece costs one call with no
//! `self` to pass, and no line buffer sits in any stack frame.

use core::cell::{Cell, UnsafeCell};
use libtock::console::Console;
use libtock_platform::ErrorCode;

/// Bytes gathered before a write to the console.
const CAP: usize = 64;

/// The line being built.
struct Buf {
    bytes: UnsafeCell<[u8; CAP]>,
    len: Cell<usize>,
}

// SAFETY: a Tock process has one thread, and its upcalls run only inside its
// yield calls. The only yield while a line is built is the console write in
// `flush`, which reads the buffer through the one reference made there (no
// other exists meanwhile), and no upcall handler of this app prints.
unsafe impl Sync for Buf {}

static BUF: Buf = Buf {
    bytes: UnsafeCell::new([0; CAP]),
    len: Cell::new(0),
};

/// Appends bytes, writing the buffer out when it is full.
#[inline(never)]
fn push(mut b: &[u8]) {
    while !b.is_empty() {
        if BUF.len.get() >= CAP {
            flush();
        }
        let len = BUF.len.get();
        let (now, rest) = b.split_at(CAP.saturating_sub(len).min(b.len()));
        // SAFETY: see `Buf`; this is the only reference to the bytes while
        // it lives, and nothing here yields.
        let bytes = unsafe { &mut *BUF.bytes.get() };
        if let Some(dst) = bytes.get_mut(len..len + now.len()) {
            dst.copy_from_slice(now);
        }
        BUF.len.set(len + now.len());
        b = rest;
    }
}

/// Writes the buffer out and empties it.
#[inline(never)]
fn flush() {
    // SAFETY: see `Buf`; the console write only reads these bytes, and
    // nothing else touches the buffer until it returns.
    let bytes = unsafe { &*BUF.bytes.get() };
    let _ = Console::write(bytes.get(..BUF.len.get()).unwrap_or(&[]));
    BUF.len.set(0);
}

/// A console line being built; it begins `zepto-service: `. Each method
/// appends one piece; [`Line::end`] writes the line.
#[derive(Clone, Copy)]
pub struct Line;

impl Line {
    /// Starts a line with `zepto-service: ` and `text`.
    #[inline(never)]
    pub fn new(text: &str) -> Self {
        BUF.len.set(0);
        push(b"zepto-service: ");
        Line.s(text)
    }

    /// Appends text.
    #[inline(never)]
    pub fn s(self, s: &str) -> Self {
        push(s.as_bytes());
        self
    }

    /// Appends `v` in decimal.
    #[inline(never)]
    pub fn dec(self, v: u32) -> Self {
        let mut d = [0u8; 10];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            if let Some(c) = d.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        push(d.get(i..).unwrap_or(&[]));
        self
    }

    /// Appends `v` as `0x` and lower-case hexadecimal digits.
    #[inline(never)]
    pub fn hex(self, v: u32) -> Self {
        let mut d = [0u8; 8];
        for (i, c) in (0u32..).zip(d.iter_mut()) {
            let n = ((v >> (28 - 4 * i)) & 0xf) as u8;
            *c = if n < 10 { b'0' + n } else { b'a' + n - 10 };
        }
        // No leading zeros (at least one digit).
        let skip = d.iter().take(7).take_while(|c| **c == b'0').count();
        push(b"0x");
        push(d.get(skip..).unwrap_or(&[]));
        self
    }

    /// Appends the name of a Tock error code (TRD 104).
    #[inline(never)]
    pub fn err(self, e: ErrorCode) -> Self {
        match ERROR_NAMES.get(e as usize) {
            Some(name) => self.s(name),
            None => self.s("code ").dec(e as u32),
        }
    }

    /// Ends the line and writes it.
    #[inline(never)]
    pub fn end(self) {
        push(b"\n");
        flush();
    }
}

/// Tock error codes 0..=13 by number (0 is success, never an error).
const ERROR_NAMES: [&str; 14] = [
    "SUCCESS",
    "FAIL",
    "BUSY",
    "ALREADY",
    "OFF",
    "RESERVE",
    "INVALID",
    "SIZE",
    "CANCEL",
    "NOMEM",
    "NOSUPPORT",
    "NODEVICE",
    "UNINSTALLED",
    "NOACK",
];

/// Writes one fixed line `zepto-service: <text>`.
pub fn say(text: &str) {
    Line::new(text).end();
}
