//! Which client buffers a service may touch.
//!
//! When a client notifies a service, the kernel (`kernel/src/ipc.rs`,
//! `IPC::schedule_upcall`) asks the memory-protection unit for a region
//! covering the client's shared buffer (`Process::add_mpu_region(ptr, len,
//! len)`), ignores whether that worked, and upcalls the service with
//! (client, len, ptr) either way. The region is never removed. So the
//! service itself must know whether the buffer is mapped; reading one that is
//! not faults the service, and a board with `PanicFaultPolicy` then stops.
//!
//! [`Regions`] replays the kernel's allocation for every upcall the service
//! receives, with the rules of the architecture's `allocate_region`
//! ([`RegionRules`]), and answers whether the buffer is certainly mapped.
//! On top of that it fixes each client's buffer at its first accepted use.

use core::cell::Cell;

/// Why a service refuses a client's request without reading its buffer.
///
/// The value is the length of the marker buffer the service shares with the
/// client for the error notification (see `ServiceEnd::refuse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The buffer's address or length breaks the architecture's region rules
    /// ([`RegionRules`]): the kernel cannot have mapped it.
    Rules = 1,
    /// The buffer is not inside the one this client shared first.
    NotFirst = 2,
    /// The buffer follows the rules, but the kernel may have had no region
    /// left for it (or an earlier buffer of unknown state overlaps it).
    NoRegion = 3,
}

impl Refusal {
    /// The refusal a marker of `len` bytes stands for.
    pub fn from_len(len: u32) -> Option<Self> {
        match len {
            1 => Some(Self::Rules),
            2 => Some(Self::NotFirst),
            3 => Some(Self::NoRegion),
            _ => None,
        }
    }
}

/// How a memory-protection unit allocates a region for `(ptr, len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// RISC-V PMP with TOR regions (`arch/riscv/src/pmp.rs`,
    /// `PMPUserMPU::allocate_region`): start and size are rounded up to 4
    /// bytes (minimum 4), and a writable region must not end past the buffer,
    /// so the region exists exactly when `ptr` and `len` are multiples of 4
    /// and `len > 0` (and a region slot is free and nothing overlaps).
    Pmp,
    /// ARMv7-M MPU (`arch/cortex-m/src/mpu.rs`, `MPU<8, 32>` on the
    /// Cortex-M4F of nRF52): the start is rounded up to 32 bytes and the size
    /// to at least 32, then to a power of two or a subregion multiple, and
    /// the logical region must end inside the buffer. A power-of-two `len`
    /// of at least 32 at an address that is a multiple of `len` is always
    /// mapped (one plain region); some other buffers at a 32-byte boundary
    /// may be (subregions), which is not replayed here: such a buffer is
    /// refused, and counted as possibly mapped.
    CortexM,
}

/// The region rules of one board: the unit and how many regions a process has
/// for IPC buffers (the unit's user regions minus those of the process's own
/// flash and RAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionRules {
    /// How regions are allocated.
    pub unit: Unit,
    /// Regions left for IPC buffers in a service.
    pub regions: u8,
}

impl RegionRules {
    /// `qemu_rv32_virt`: `KernelProtectionMMLEPMP<16, 5>` gives 5 user
    /// regions; flash and RAM take one each.
    pub const QEMU_RV32_VIRT: Self = Self {
        unit: Unit::Pmp,
        regions: 3,
    };
    /// Cortex-M4 boards (e.g. nRF52840): `MPU<8, 32>`, 8 regions; flash takes
    /// one and process RAM two.
    pub const CORTEX_M4: Self = Self {
        unit: Unit::CortexM,
        regions: 5,
    };
    /// The rules of the target this is built for (RISC-V: `qemu_rv32_virt`,
    /// ARM: Cortex-M4; other targets, e.g. host tests: `qemu_rv32_virt`).
    /// A board with fewer regions (e.g. `e310x`: 4 user regions, 2 for IPC)
    /// needs its own value.
    pub const TARGET: Self = if cfg!(target_arch = "arm") {
        Self::CORTEX_M4
    } else {
        Self::QEMU_RV32_VIRT
    };

    /// Whether the kernel's allocation for `(ptr, len)` certainly succeeds
    /// when a slot is free and no region overlaps.
    pub fn always_maps(&self, ptr: u32, len: u32) -> bool {
        if ptr.checked_add(len).is_none() {
            return false;
        }
        match self.unit {
            Unit::Pmp => len > 0 && ptr.is_multiple_of(4) && len.is_multiple_of(4),
            Unit::CortexM => len >= 32 && len.is_power_of_two() && ptr.is_multiple_of(len),
        }
    }

    /// Whether the kernel's allocation for `(ptr, len)` can succeed at all.
    pub fn may_map(&self, ptr: u32, len: u32) -> bool {
        if ptr.checked_add(len).is_none() {
            return false;
        }
        match self.unit {
            Unit::Pmp => self.always_maps(ptr, len),
            Unit::CortexM => len >= 32 && ptr.is_multiple_of(32),
        }
    }

    /// The smallest buffer length that [`RegionRules::always_maps`] accepts
    /// at a suitably aligned address.
    pub fn min_len(&self) -> u32 {
        match self.unit {
            Unit::Pmp => 4,
            Unit::CortexM => 32,
        }
    }
}

/// A region the kernel may have added for an IPC buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    start: u32,
    end: u32,
    /// Certainly mapped (else: maybe).
    mapped: bool,
}

/// Regions remembered; more "maybe" regions than this make every later
/// buffer uncertain.
const REMEMBERED: usize = 8;

/// The service's replay of the kernel's IPC regions, and each client's
/// buffer fixed at first use.
pub struct Regions<const CLIENTS: usize> {
    rules: RegionRules,
    seen: [Cell<Option<Seen>>; REMEMBERED],
    /// Upper bound of regions the kernel has used for IPC buffers.
    used: Cell<u8>,
    /// A region that may exist was not remembered.
    lost: Cell<bool>,
    first: [Cell<Option<(u32, u32)>>; CLIENTS],
}

impl<const CLIENTS: usize> Regions<CLIENTS> {
    /// No regions yet (a service's state at process start).
    pub fn new(rules: RegionRules) -> Self {
        Self {
            rules,
            seen: Default::default(),
            used: Cell::new(0),
            lost: Cell::new(false),
            first: core::array::from_fn(|_| Cell::new(None)),
        }
    }

    /// The rules in use.
    pub fn rules(&self) -> RegionRules {
        self.rules
    }

    fn remember(&self, s: Seen) {
        match self.seen.iter().find(|c| c.get().is_none()) {
            Some(c) => c.set(Some(s)),
            None => self.lost.set(true),
        }
    }

    /// Replays the kernel's `add_mpu_region(ptr, len, len)` for one upcall
    /// from `client` and decides whether the service may touch the buffer.
    /// Must run for every IPC upcall, in order, since each may have taken a
    /// region. `len == 0` or `ptr == 0` (no buffer shared) is always `Ok`.
    pub fn check(&self, client: usize, len: u32, ptr: u32) -> Result<(), Refusal> {
        if len == 0 || ptr == 0 {
            return Ok(());
        }
        let end = ptr.checked_add(len).ok_or(Refusal::Rules)?;
        let mut inside = false;
        let mut hits_mapped = false;
        let mut hits_any = false;
        for s in self.seen.iter().filter_map(Cell::get) {
            if s.start < end && ptr < s.end {
                hits_any = true;
                hits_mapped |= s.mapped;
                inside |= s.mapped && s.start <= ptr && end <= s.end;
            }
        }
        // What the kernel did: an overlap with a mapped region or a buffer it
        // cannot map adds nothing; otherwise it may have added a region.
        if self.rules.may_map(ptr, len) && !hits_mapped {
            let sure = self.rules.always_maps(ptr, len)
                && !hits_any
                && !self.lost.get()
                && self.used.get() < self.rules.regions;
            self.used.set(self.used.get().saturating_add(1));
            self.remember(Seen {
                start: ptr,
                end,
                mapped: sure,
            });
            inside = sure;
        }
        let first = self.first.get(client).ok_or(Refusal::NotFirst)?;
        match first.get() {
            Some((start, stop)) if start <= ptr && end <= stop => Ok(()),
            _ if !inside && !self.rules.always_maps(ptr, len) => Err(Refusal::Rules),
            Some(_) => Err(Refusal::NotFirst),
            None if !inside => Err(Refusal::NoRegion),
            None => {
                first.set(Some((ptr, end)));
                Ok(())
            }
        }
    }
}
