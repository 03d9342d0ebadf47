//! The kernel's error type and the protocol handlers' return codes
//! (`reference-implementation/zepto-os.rst`, "Return Codes").

use core::fmt;

/// Every error the kernel reports through its API.
///
/// Errors are plain values: no kernel function panics, and a function that returns an
/// error leaves the state it was given as it was (unless its documentation says
/// otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The Zepto Heap arena has no room for the requested bytes.
    OutOfMemory,
    /// All `MAX_BLOCKS` heap handles are in use.
    NoFreeHandle,
    /// The handle is not allocated (freed, or never allocated in this heap).
    InvalidHandle,
    /// A parser ran past the end of its data.
    UnexpectedEnd,
    /// An encoded field is malformed (e.g. an Encoded-Int whose last allowed byte has
    /// its high bit set, or a bad `max=`).
    InvalidEncoding,
    /// A value does not fit the field it is written to or read from.
    ValueOutOfRange,
    /// A caller-provided buffer is too small.
    BufferTooSmall,
    /// A parser no longer matches its block (the request was replaced or shrunk).
    StaleParser,
    /// Persistent storage failed or was addressed out of range.
    Storage,
    /// A bus (link) failed to send or receive.
    Bus,
    /// The platform does not provide this facility (pin, bus, sensor ...).
    Unsupported,
    /// A packet failed authentication (wrong key, corrupted or forged).
    AuthenticationFailed,
    /// A packet or message is malformed for the protocol layer parsing it.
    Malformed,
    /// An operation did not complete in time.
    Timeout,
    /// The operation is not valid in the current state.
    InvalidState,
    /// The 47-bit SASP nonce space is used up: no packet can be sent under this key.
    NonceExhausted,
    /// Storage holds no nonce records for this key, and the port does not start
    /// blank records by itself: provision them (with a new key).
    NotProvisioned,
    /// Nonce records for this key exist already: its counters may only go up, so it
    /// cannot be provisioned again (use a new key).
    KeyInUse,
}

impl Error {
    /// What went wrong, in a few words (also the `Display` text); for ports that
    /// print without `core::fmt`.
    pub const fn message(self) -> &'static str {
        match self {
            Error::OutOfMemory => "out of Zepto Heap memory",
            Error::NoFreeHandle => "no free Zepto Heap handle",
            Error::InvalidHandle => "invalid Zepto Heap handle",
            Error::UnexpectedEnd => "unexpected end of data",
            Error::InvalidEncoding => "invalid encoding",
            Error::ValueOutOfRange => "value out of range",
            Error::BufferTooSmall => "buffer too small",
            Error::StaleParser => "parser no longer matches its block",
            Error::Storage => "storage error",
            Error::Bus => "bus error",
            Error::Unsupported => "not supported by this platform",
            Error::AuthenticationFailed => "authentication failed",
            Error::Malformed => "malformed packet",
            Error::Timeout => "timed out",
            Error::InvalidState => "invalid state for this operation",
            Error::NonceExhausted => "nonce space exhausted",
            Error::NotProvisioned => "no nonce records for this key (not provisioned)",
            Error::KeyInUse => "nonce records for this key exist already",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for Error {}

/// What a protocol handler tells the main pump to do next
/// (zepto-os.rst "Return Codes"). The pump, not the handler, acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// The reply is ready: convert it to the request and call the next handler of the
    /// current direction.
    Pass,
    /// The reply must go back down the *sending* path, starting with the layer below
    /// the one that produced it (e.g. an SASP "old nonce" message or an SAGDP resend).
    ReplyDown,
    /// Drop the current packet and wait for another one (IGNORE_PACKET).
    IgnorePacket,
    /// Re-initialise the whole protocol stack (FATAL_ERROR_REINIT).
    FatalErrorReinit,
    /// The handler waits for an event (WAITING_FOR); see [`crate::hal::WaitingFor`].
    WaitingFor,
}
