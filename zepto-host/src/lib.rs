//! Zepto OS on Linux: the host HAL ([`hal::HostHal`]), packet links (UDP, serial,
//! pty, TCP) and the file-backed EEPROM used by the `zepto` command line.

pub mod asm;
pub mod cli;
pub mod commands;
pub mod describe;
pub mod framing;
pub mod hal;
pub mod link;
pub mod out;
pub mod storage;
