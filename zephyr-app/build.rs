//! Makes Zephyr's boolean Kconfig options (e.g. `CONFIG_UART_INTERRUPT_DRIVEN`)
//! available as `cfg(...)` in this crate.

fn main() {
    zephyr_build::export_kconfig_bool_options();
}
