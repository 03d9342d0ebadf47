//! Power management hooks (glue.c; Zephyr's PM API has no Rust binding).
//!
//! With `CONFIG_PM` the pump holds a policy lock on the deep power states
//! (`pm_policy_state_lock_get` / `_put`) while it works and releases it when it
//! sleeps; before releasing it, it checkpoints the nonces if they moved
//! ([`Checkpoints`]). A notifier (`pm_notifier_register`) counts low-power entries and
//! wakes the pump only when the stored nonces are not exact (a checkpoint failed).
//! Without `CONFIG_PM` the C functions are empty and [`enabled`] is false, so the
//! checkpoint code is not built in.

use core::sync::atomic::{AtomicU32, Ordering};

use zepto_kernel::pump::{Device, Execution};
use zepto_kernel::sasp::SaspCipher;

use crate::hal::ZephyrHal;

extern "C" {
    fn zepto_pm_hold(hold: bool);
    fn zepto_pm_init();
    fn zepto_pm_checkpoint_requested() -> bool;
    fn zepto_pm_set_dirty(dirty: bool);
}

/// Nonce checkpoints written so far (read by the PM test hooks).
static CHECKPOINTS: AtomicU32 = AtomicU32::new(0);

/// Number of nonce checkpoints written since start.
#[no_mangle]
pub extern "C" fn zepto_pm_checkpoints() -> u32 {
    CHECKPOINTS.load(Ordering::Relaxed)
}

/// True if the build has `CONFIG_PM` (the hooks do something). A constant, so that
/// builds without PM leave the checkpoint code out.
pub const fn enabled() -> bool {
    cfg!(CONFIG_PM)
}

/// Registers the PM notifier.
pub fn init() {
    // SAFETY: plain call into glue.c; call once, from the pump thread.
    unsafe { zepto_pm_init() }
}

/// Takes (`true`) or releases (`false`) the lock on the deep power states;
/// repeated calls with the same value do nothing.
pub fn hold(hold: bool) {
    // SAFETY: plain call into glue.c; only the pump thread calls it.
    unsafe { zepto_pm_hold(hold) }
}

/// True once after the PM notifier saw a low-power entry while the stored nonces
/// were not exact.
pub fn checkpoint_requested() -> bool {
    // SAFETY: plain call into glue.c.
    enabled() && unsafe { zepto_pm_checkpoint_requested() }
}

/// The nonce state of the last checkpoint, to checkpoint (and log) only when the
/// state moved.
pub struct Checkpoints {
    /// (NFS, NLW) exact in storage.
    saved: (u64, u64),
    /// (NFS, NLW) whose checkpoint failed and was logged.
    failed: Option<(u64, u64)>,
}

impl Checkpoints {
    /// Starts from the state the device opened with (its marks are in storage).
    pub fn new<V: Execution, C: SaspCipher, const N: usize, const B: usize, const E: usize>(
        dev: &Device<'_, '_, V, C, N, B, E>,
    ) -> Self {
        Checkpoints {
            saved: (dev.nonces().nfs(), dev.nonces().nlw()),
            failed: None,
        }
    }

    /// Writes the exact nonces if they moved since the last checkpoint, logging each
    /// checkpoint (or each failed state) once. Tells the PM notifier whether storage is
    /// exact; returns true if it is.
    pub fn update<V: Execution, C: SaspCipher, const N: usize, const B: usize, const E: usize>(
        &mut self,
        dev: &mut Device<'_, '_, V, C, N, B, E>,
        hal: &mut ZephyrHal,
    ) -> bool {
        let now = (dev.nonces().nfs(), dev.nonces().nlw());
        let exact = now == self.saved
            || match dev.checkpoint(hal) {
                Ok(()) => {
                    self.saved = now;
                    self.failed = None;
                    CHECKPOINTS.fetch_add(1, Ordering::Relaxed);
                    say!(
                        "zepto: nonces checkpointed before low power (NFS ",
                        now.0,
                        ", NLW ",
                        now.1,
                        ")"
                    );
                    true
                }
                Err(e) => {
                    if self.failed != Some(now) {
                        say!("zepto: nonce checkpoint failed (", e, ")");
                        self.failed = Some(now);
                    }
                    false
                }
            };
        // SAFETY: plain call into glue.c.
        unsafe { zepto_pm_set_dirty(!exact) };
        exact
    }
}
