//! Power management hooks (glue.c; Zephyr's PM API has no Rust binding).
//!
//! With `CONFIG_PM` the pump holds a policy lock on the deep power states
//! (`pm_policy_state_lock_get` / `_put`) while it works and releases it when it
//! sleeps, and a notifier (`pm_notifier_register`) asks it to checkpoint the nonces
//! when the SoC enters a low-power state. Without `CONFIG_PM` the C functions are
//! empty and [`enabled`] is false.

extern "C" {
    fn zepto_pm_hold(hold: bool);
    fn zepto_pm_init();
    fn zepto_pm_checkpoint_requested() -> bool;
    fn zepto_pm_enabled() -> bool;
}

/// True if the build has `CONFIG_PM` (the hooks do something).
pub fn enabled() -> bool {
    // SAFETY: plain call into glue.c.
    unsafe { zepto_pm_enabled() }
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

/// True once after the PM notifier saw the SoC enter a low-power state.
pub fn checkpoint_requested() -> bool {
    // SAFETY: plain call into glue.c.
    unsafe { zepto_pm_checkpoint_requested() }
}
