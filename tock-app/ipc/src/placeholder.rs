//! Placeholder request/reply protocol between `zepto-client` and
//! `zepto-service`, used until the OS-independent service protocol of
//! zepto-kernel replaces it.
//!
//! The client shares one buffer; the service overwrites the request with the
//! reply in the same buffer.
//!
//! ```text
//! request: [op: u8][len: u8][payload: len bytes]
//! reply:   [status: u8][len: u8][payload: len bytes]
//! ```
//!
//! | op | meaning | reply |
//! |----|---------|-------|
//! | 0 `OP_LOAD` | store payload as the program (at most [`PROGRAM_CAPACITY`] bytes) | `STATUS_OK`, payload = [stored length] |
//! | 1 `OP_EXECUTE` | run the stored program | `STATUS_OK`, payload = the stored program (echo); `STATUS_NO_PROGRAM` if none |
//! | other | - | `STATUS_UNKNOWN_OP`, payload = [op] |
//!
//! A request whose `len` does not fit the buffer, or a LOAD larger than
//! [`PROGRAM_CAPACITY`], gets `STATUS_MALFORMED` with an empty payload. A
//! buffer shorter than the 2-byte header cannot hold a reply and is left
//! unchanged.

/// Request op: load a program.
pub const OP_LOAD: u8 = 0;
/// Request op: execute the loaded program.
pub const OP_EXECUTE: u8 = 1;

/// Reply status: success.
pub const STATUS_OK: u8 = 0;
/// Reply status: unknown op.
pub const STATUS_UNKNOWN_OP: u8 = 1;
/// Reply status: length field inconsistent with the buffer or the program
/// capacity.
pub const STATUS_MALFORMED: u8 = 2;
/// Reply status: EXECUTE without a loaded program.
pub const STATUS_NO_PROGRAM: u8 = 3;

/// Size of the request and reply header.
pub const HEADER_LEN: usize = 2;
/// Largest program the placeholder service stores.
pub const PROGRAM_CAPACITY: usize = 32;

/// A message (request or reply) could not be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// The buffer is too short for the header plus payload, or the payload is
    /// longer than 255 bytes.
    DoesNotFit,
}

/// Writes `[code][len][payload]` to the start of `buffer`; returns the
/// message length.
pub fn encode(buffer: &mut [u8], code: u8, payload: &[u8]) -> Result<usize, MessageError> {
    let len = u8::try_from(payload.len()).map_err(|_| MessageError::DoesNotFit)?;
    let total = HEADER_LEN + payload.len();
    let out = buffer.get_mut(..total).ok_or(MessageError::DoesNotFit)?;
    let (header, body) = out.split_at_mut(HEADER_LEN);
    header.copy_from_slice(&[code, len]);
    body.copy_from_slice(payload);
    Ok(total)
}

/// Reads `[code][len][payload]` from the start of `buffer`.
pub fn decode(buffer: &[u8]) -> Result<(u8, &[u8]), MessageError> {
    match buffer {
        [code, len, rest @ ..] => rest
            .get(..usize::from(*len))
            .map(|payload| (*code, payload))
            .ok_or(MessageError::DoesNotFit),
        _ => Err(MessageError::DoesNotFit),
    }
}

/// The placeholder service's state: the last loaded program.
#[derive(Debug, Default)]
pub struct PlaceholderService {
    program: [u8; PROGRAM_CAPACITY],
    program_len: Option<usize>,
}

impl PlaceholderService {
    /// Answers the request in `buffer` in place (see the module docs).
    pub fn answer(&mut self, buffer: &mut [u8]) {
        let (status, reply_len) = self.reply_for(buffer);
        // Replies always fit: they are never longer than the request they
        // replace or than a buffer that held at least a header.
        if let Some(header) = buffer.get_mut(..HEADER_LEN) {
            header.copy_from_slice(&[status, reply_len]);
        }
    }

    /// Computes the reply; writes the reply payload after the header and
    /// returns (status, payload length).
    fn reply_for(&mut self, buffer: &mut [u8]) -> (u8, u8) {
        let (op, payload) = match decode(buffer) {
            Ok(request) => request,
            Err(MessageError::DoesNotFit) => return (STATUS_MALFORMED, 0),
        };
        match op {
            OP_LOAD => {
                let Some(slot) = self.program.get_mut(..payload.len()) else {
                    return (STATUS_MALFORMED, 0);
                };
                slot.copy_from_slice(payload);
                self.program_len = Some(payload.len());
                let stored = payload.len() as u8; // <= PROGRAM_CAPACITY
                self.write_payload(buffer, &[stored])
            }
            OP_EXECUTE => match self.program_len {
                Some(len) => {
                    let program = self.program;
                    self.write_payload(buffer, program.get(..len).unwrap_or(&[]))
                }
                None => (STATUS_NO_PROGRAM, 0),
            },
            other => self.write_payload_status(buffer, STATUS_UNKNOWN_OP, &[other]),
        }
    }

    fn write_payload(&self, buffer: &mut [u8], payload: &[u8]) -> (u8, u8) {
        self.write_payload_status(buffer, STATUS_OK, payload)
    }

    fn write_payload_status(&self, buffer: &mut [u8], status: u8, payload: &[u8]) -> (u8, u8) {
        match encode(buffer, status, payload) {
            Ok(_) => (status, payload.len() as u8), // encode checked it fits a u8
            Err(MessageError::DoesNotFit) => (STATUS_MALFORMED, 0),
        }
    }
}
