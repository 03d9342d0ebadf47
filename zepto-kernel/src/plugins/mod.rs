//! Plugins (`smartanthill-plugins.rst`): the code behind each body part, and the
//! built-in plugins every port can use.
//!
//! A plugin is a value implementing [`Plugin`]: its *configuration* (pins, options of
//! one body part, never taken from the program) and its fixed-size *state* are fields
//! of that value. The VM calls [`Plugin::handle`] with a nested [`Parser`] over the
//! EXEC data; the plugin appends its reply body to the reply of the given handle. A
//! plugin that must wait returns [`PluginStep::Waiting`] and is called again (with the
//! same command) after the wait; an error it reports with
//! [`PluginFault::Exception`] lands in its reply frame as a Plugin-Exception header.
//!
//! Body parts are registered in a plain slice of [`Bodypart`] entries (no allocation):
//!
//! ```
//! use zepto_kernel::plugins::{Bodypart, Echo, Ping};
//! let (mut ping, mut echo) = (Ping, Echo);
//! let mut table = [Bodypart::new(0, &mut ping), Bodypart::new(1, &mut echo)];
//! assert_eq!(table.len(), 2);
//! # let _ = &mut table;
//! ```
//!
//! See `docs/plugins.md` for a complete example.

use crate::error::Error;
use crate::hal::WaitingFor;
use crate::heap::{Handle, Heap, Parser};
use crate::vm::VmHal;

pub use crate::vm::reply::PluginException;

/// What a plugin call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginStep {
    /// The reply body is complete.
    Done,
    /// Call again (with the same command) after this wait.
    Waiting(WaitingFor),
}

/// Why a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginFault {
    /// ZEPTO_THROW: recorded in the reply frame; the program goes on.
    Exception(PluginException),
    /// A kernel error: [`Error::OutOfMemory`] marks the frame truncated (the program
    /// goes on); any other error is the VM exception ZEPTOVM_PLUGINERROR.
    Kernel(Error),
}

impl From<Error> for PluginFault {
    fn from(e: Error) -> Self {
        PluginFault::Kernel(e)
    }
}

/// Exception code of ZEPTO_ASSERT.
pub const EXCEPTION_ASSERT: u16 = 1;
/// Exception code the built-in plugins use for a malformed command.
pub const EXCEPTION_BAD_COMMAND: u16 = 2;
/// First exception code free for applications (ZEPTO_USER_EXCEPTION).
pub const USER_EXCEPTION: u16 = 64;

/// A plugin handler (plugin_handler_init / plugin_handler).
pub trait Plugin {
    /// Called once when the device starts (plugin_handler_init).
    fn init(&mut self, hal: &mut dyn VmHal) -> Result<(), Error> {
        let _ = hal;
        Ok(())
    }

    /// Handles one EXEC: reads `command` (the EXEC data) and appends the reply body
    /// to the reply of `reply` through `heap`.
    fn handle(
        &mut self,
        command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault>;

    /// The program was aborted while this plugin was waiting: drop the pending call.
    fn abort(&mut self) {}
}

/// One entry of the body part table: BODYPART-ID and its plugin.
pub struct Bodypart<'p> {
    /// BODYPART-ID (Encoded-Signed-Int<max=2>; negative ids are built-in body parts).
    pub id: i16,
    /// The plugin instance (configuration and state of this body part).
    pub plugin: &'p mut dyn Plugin,
    /// True while a call of this plugin is waiting.
    pub(crate) pending: bool,
}

impl<'p> Bodypart<'p> {
    /// A table entry.
    pub fn new(id: i16, plugin: &'p mut dyn Plugin) -> Self {
        Self {
            id,
            plugin,
            pending: false,
        }
    }
}

impl core::fmt::Debug for Bodypart<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bodypart")
            .field("id", &self.id)
            .field("pending", &self.pending)
            .finish()
    }
}

/// Calls [`Plugin::init`] of every body part.
pub fn init_all(table: &mut [Bodypart<'_>], hal: &mut dyn VmHal) -> Result<(), Error> {
    for b in table.iter_mut() {
        b.plugin.init(hal)?;
    }
    Ok(())
}

/// Ping: ignores its command and replies with the single byte `0x01`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ping;

impl Plugin for Ping {
    fn handle(
        &mut self,
        _command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        heap.append_reply_u8(reply, 0x01)?;
        Ok(PluginStep::Done)
    }
}

/// Echo: replies with its command bytes (an empty command throws
/// [`EXCEPTION_BAD_COMMAND`], as a reply must not be empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Plugin for Echo {
    fn handle(
        &mut self,
        command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        if command.is_empty() {
            return Err(PluginFault::Exception(PluginException {
                code: EXCEPTION_BAD_COMMAND,
                file_hash: 0,
                line: line!() as u16,
            }));
        }
        let mut buf = [0u8; 16];
        while !command.is_empty() {
            let n = command.remaining().min(buf.len());
            let chunk = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
            command.read_into(heap, chunk)?;
            heap.append_reply(reply, chunk)?;
        }
        Ok(PluginStep::Done)
    }
}

/// Digital pin of one body part. Command: one byte, 0 = drive low, 1 = drive high,
/// 2 = read. Reply: one byte, the pin level after the command.
#[derive(Debug, Clone, Copy)]
pub struct DigitalPin {
    /// The pin (configuration).
    pub pin: u8,
}

impl Plugin for DigitalPin {
    fn handle(
        &mut self,
        command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        let bad = PluginFault::Exception(PluginException {
            code: EXCEPTION_BAD_COMMAND,
            file_hash: 0,
            line: line!() as u16,
        });
        let cmd = command.u8(heap).map_err(|_| bad)?;
        let level = match cmd {
            0 | 1 => {
                hal.write_pin(self.pin, cmd == 1)?;
                cmd == 1
            }
            2 => hal.read_pin(self.pin)?,
            _ => return Err(bad),
        };
        heap.append_reply_u8(reply, u8::from(level))?;
        Ok(PluginStep::Done)
    }
}

/// A deterministic simulated sensor (hosts and tests). Each measurement takes
/// `delay_ms` (the call waits, as a state machine) and returns
/// `base + step * n` for the n-th measurement (wrapping), as a TWO_BYTE_FIELD.
/// The command is ignored.
#[derive(Debug, Clone, Copy)]
pub struct SimSensor {
    /// First value (configuration).
    pub base: u16,
    /// Increment per measurement (configuration).
    pub step: u16,
    /// Measurement time (configuration).
    pub delay_ms: u16,
    /// Measurements done so far (state).
    pub count: u16,
    /// Low 32 bits of the clock when the running measurement ends (state).
    ready_at: Option<u32>,
}

impl SimSensor {
    /// A sensor with the given configuration.
    pub const fn new(base: u16, step: u16, delay_ms: u16) -> Self {
        Self {
            base,
            step,
            delay_ms,
            count: 0,
            ready_at: None,
        }
    }
}

impl Plugin for SimSensor {
    fn handle(
        &mut self,
        _command: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        let now = hal.now_ms() as u32;
        if self.delay_ms > 0 {
            let at = *self
                .ready_at
                .get_or_insert(now.wrapping_add(u32::from(self.delay_ms)));
            let left = at.wrapping_sub(now) as i32;
            if left > 0 {
                return Ok(PluginStep::Waiting(WaitingFor::time(left as u32)));
            }
        }
        self.ready_at = None;
        let v = self.base.wrapping_add(self.step.wrapping_mul(self.count));
        self.count = self.count.wrapping_add(1);
        heap.append_reply_u16(reply, v)?;
        Ok(PluginStep::Done)
    }

    fn abort(&mut self) {
        self.ready_at = None;
    }
}
