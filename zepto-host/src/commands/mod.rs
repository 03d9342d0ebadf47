//! The `zepto` subcommands, one module each.

pub mod common;
pub mod decode;
pub mod demo;
pub mod device;
pub mod send;
pub mod tools;
