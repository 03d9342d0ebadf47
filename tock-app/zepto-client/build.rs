//! Links the app at the flash/RAM addresses given by `LIBTOCK_PLATFORM` or
//! `LIBTOCK_LINKER_FLASH` / `LIBTOCK_LINKER_RAM` (see the Makefile), with the
//! stack in RAM only (`scripts/stack_layout.rs`).
include!("../scripts/stack_layout.rs");

fn main() {
    libtock_build_scripts::auto_layout();
    stack_in_ram_only();
}
