//! Console lines without `core::fmt`.
//!
//! [`say!`](crate::say) joins its pieces (string slices, C strings, integers, kernel
//! errors) into one console line, written with `k_str_out`. `core::fmt` with the
//! `Display` and `Debug` code of every type printed costs several KB of flash on a
//! Cortex-M; this costs one decimal conversion and a small buffer on the stack.

use core::ffi::{c_char, CStr};

use zepto_kernel::Error;

/// Bytes gathered before they go to the console (a longer line goes out in parts).
const CHUNK: usize = 80;

/// 10^19 down to 10^0: the place values of a `u64` in decimal.
const POWERS_OF_TEN: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 19;
    while i > 0 {
        i -= 1;
        p[i] = p[i + 1] * 10;
    }
    p
};

/// A console line being written.
pub struct Line {
    buf: [u8; CHUNK],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; CHUNK],
            len: 0,
        }
    }

    /// Appends bytes, writing out what is gathered whenever the buffer is full.
    #[inline(never)]
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len >= CHUNK {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Appends `v` in decimal. Digits come from subtracting powers of ten, so no
    /// 64-bit division routine (700 B of `__udivmoddi4` on a Cortex-M3) is linked.
    #[inline(never)]
    pub fn unsigned(&mut self, mut v: u64) {
        let mut started = false;
        for &power in POWERS_OF_TEN.iter() {
            let mut digit = b'0';
            while v >= power {
                v -= power;
                digit += 1;
            }
            started |= digit != b'0' || power == 1;
            if started {
                self.bytes(&[digit]);
            }
        }
    }

    /// Appends `v` in decimal, with a sign when negative.
    pub fn signed(&mut self, v: i64) {
        if v < 0 {
            self.bytes(b"-");
        }
        self.unsigned(v.unsigned_abs());
    }

    /// Writes out what is gathered.
    fn flush(&mut self) {
        if self.len > 0 {
            // SAFETY: `buf` holds `len` initialised bytes; `k_str_out` only reads them.
            unsafe { zephyr::raw::k_str_out(self.buf.as_mut_ptr() as *mut c_char, self.len) };
            self.len = 0;
        }
    }

    /// Ends the line: a newline, and out it goes.
    #[inline(never)]
    pub fn end(&mut self) {
        self.bytes(b"\n");
        self.flush();
    }
}

/// Something [`say!`](crate::say) can print.
pub trait Piece {
    /// Appends `self` to `line`.
    fn put(&self, line: &mut Line);
}

impl Piece for &str {
    fn put(&self, line: &mut Line) {
        line.bytes(self.as_bytes());
    }
}

impl Piece for &CStr {
    fn put(&self, line: &mut Line) {
        line.bytes(self.to_bytes());
    }
}

impl Piece for Error {
    fn put(&self, line: &mut Line) {
        line.bytes(self.message().as_bytes());
    }
}

macro_rules! unsigned_piece {
    ($($t:ty),*) => {$(
        impl Piece for $t {
            fn put(&self, line: &mut Line) {
                line.unsigned(*self as u64);
            }
        }
    )*};
}
unsigned_piece!(u8, u16, u32, u64, usize);

macro_rules! signed_piece {
    ($($t:ty),*) => {$(
        impl Piece for $t {
            fn put(&self, line: &mut Line) {
                line.signed(*self as i64);
            }
        }
    )*};
}
signed_piece!(i32, i64, isize);

/// Prints one console line made of its pieces, in order:
/// `say!("zepto: bus <- ", n, " bytes")`.
#[macro_export]
macro_rules! say {
    ($($piece:expr),+ $(,)?) => {{
        let mut line = $crate::say::Line::new();
        $( $crate::say::Piece::put(&$piece, &mut line); )+
        line.end();
    }};
}
