//! Build-time sizes of each configuration (selected by cargo features).

/// Largest packet on the link. A SASP packet is 6 header + 16 tag + 16*k bytes; 70
/// bytes (k = 3) carry SACCP commands of the 8 bytes every device must accept with
/// room to spare; the `big` feature makes room for 64-byte programs and replies.
#[cfg(not(feature = "big"))]
pub const MTU: usize = 70;
/// See above.
#[cfg(feature = "big")]
pub const MTU: usize = 134;

/// Zepto Heap arena bytes.
#[cfg(not(feature = "big"))]
pub const HEAP: usize = 192;
/// See above.
#[cfg(feature = "big")]
pub const HEAP: usize = 512;

/// Heap handles: the pump's four, plus one per pseudo-thread (VM-Medium).
#[cfg(not(feature = "vm-medium"))]
#[cfg_attr(feature = "vm-only", allow(dead_code))]
pub const HANDLES: usize = 4;
/// See above.
#[cfg(feature = "vm-medium")]
pub const HANDLES: usize = 6;

/// Reply stack frames, expression stack entries and pseudo-threads of the VM.
#[allow(dead_code)]
pub const REPLY_STACK: usize = 4;
/// See above.
#[allow(dead_code)]
pub const EXPR_STACK: usize = 4;
/// See above.
#[allow(dead_code)]
pub const PSEUDO_THREADS: usize = 2;

/// The VM of this build.
#[cfg(feature = "vm-medium")]
pub type Vm = zepto_kernel::vm::VmMedium<REPLY_STACK, EXPR_STACK, PSEUDO_THREADS>;
/// The VM of this build.
#[cfg(all(feature = "vm-small", not(feature = "vm-medium")))]
pub type Vm = zepto_kernel::vm::VmSmall<REPLY_STACK, EXPR_STACK>;
/// The VM of this build.
#[cfg(not(any(feature = "vm-small", feature = "vm-medium")))]
pub type Vm = zepto_kernel::vm::VmOne;

/// Name of the configuration, printed at boot.
pub const NAME: &str = concat!("zepto micro:bit ", env!("ZEPTO_CONFIG_NAME"), "\r\n");
