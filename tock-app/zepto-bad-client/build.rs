//! Links the app at the flash/RAM addresses given by `LIBTOCK_PLATFORM` or
//! `LIBTOCK_LINKER_FLASH` / `LIBTOCK_LINKER_RAM` (see the Makefile).
fn main() {
    libtock_build_scripts::auto_layout();
}
