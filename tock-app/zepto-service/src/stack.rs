//! Stack high-water mark: the free part of the stack is painted with a pattern
//! at start, and the deepest word that no longer holds it marks the peak.
//!
//! The stack is libtock-rs's `STACK_MEMORY` (`stack_size!`), at the start of
//! the process's RAM; it grows down from its end. The peak includes whatever
//! ran on this stack: the service's own frames and the kernel's upcall frames.

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

/// Pattern of a word the stack has not reached.
const PAINT: u32 = 0x5a5a_a5a5;
/// Bytes left unpainted below the painting function's own frame.
const GAP: usize = 64;

/// Start (lowest address) and length of the stack memory.
fn bounds() -> (*mut u32, usize) {
    // Only the address of the static is taken; nothing reads or writes it
    // through a reference.
    let base = addr_of_mut!(crate::STACK_MEMORY);
    (base.cast::<u32>(), crate::STACK_SIZE)
}

/// Paints the stack below the caller's frame. Called first thing in `main`.
#[inline(never)]
pub fn paint() {
    let here = 0u32;
    let limit = (&here as *const u32 as usize).saturating_sub(GAP);
    let (base, _) = bounds();
    let mut p = base;
    while (p as usize) < limit {
        // SAFETY: `p` lies in the stack memory, below the current frame (the
        // stack grows down, this function calls nothing), so no live value
        // is there; the words are written with volatile stores only.
        unsafe {
            write_volatile(p, PAINT);
            p = p.add(1);
        }
    }
}

/// Bytes of the stack used so far (from its top to the deepest word that no
/// longer holds the paint), and its size.
#[inline(never)]
pub fn peak() -> (usize, usize) {
    let (base, size) = bounds();
    let words = size / 4;
    let mut i = 0;
    // SAFETY: `base.add(i)` for `i < words` lies in the stack memory; a
    // volatile read of a word there, below or above the stack pointer, has
    // no effect on the program (the value is only compared).
    while i < words && unsafe { read_volatile(base.add(i)) } == PAINT {
        i += 1;
    }
    (size - 4 * i, size)
}
