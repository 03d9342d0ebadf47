//! Diagnostics body part: measured RAM use of the running firmware.
//!
//! cortex-m-rt paints the stack region (between the end of `.bss` and the top of
//! RAM) with `0xCCCC_CCCC` at reset (`paint-stack` feature); the deepest word no
//! longer holding the paint marks the stack's high-water mark.
//!
//! Command: ignored. Reply (four little-endian u16): peak stack bytes since reset,
//! bytes of `.data` + `.bss`, Zepto Heap arena bytes, bytes of the device object
//! (all protocol, VM and heap state; it lives in `main`'s stack frame, so the peak
//! stack includes it).

use zepto_kernel::heap::{Handle, Heap, Parser};
use zepto_kernel::plugins::PluginFault;
use zepto_kernel::plugins::{Plugin, PluginStep};
use zepto_kernel::vm::VmHal;

const PAINT: u32 = 0xCCCC_CCCC;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
    static __sdata: u32;
}

/// Bytes of stack used at the deepest point since reset.
pub fn peak_stack() -> usize {
    // Linker symbols: only their addresses are used.
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let mut a = bottom;
    // SAFETY: `a` stays inside the stack region, word aligned.
    while a < top && unsafe { core::ptr::read_volatile(a as *const u32) } == PAINT {
        a += 4;
    }
    top - a
}

/// Bytes of `.data` and `.bss` (from the start of RAM to the start of the stack
/// region).
pub fn static_ram() -> usize {
    // Linker symbols: only their addresses are used.
    core::ptr::addr_of!(_stack_end) as usize - core::ptr::addr_of!(__sdata) as usize
}

/// The diagnostics plugin, configured with the size of the device object.
pub struct Diag {
    state_bytes: u16,
}

impl Diag {
    /// The plugin.
    pub const fn new(state_bytes: u16) -> Self {
        Self { state_bytes }
    }
}

impl Plugin for Diag {
    fn handle(
        &mut self,
        _command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        heap.append_reply_u16(reply, peak_stack() as u16)?;
        heap.append_reply_u16(reply, static_ram() as u16)?;
        heap.append_reply_u16(reply, crate::config::HEAP as u16)?;
        heap.append_reply_u16(reply, self.state_bytes)?;
        Ok(PluginStep::Done)
    }
}
