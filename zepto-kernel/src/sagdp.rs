//! SAGDP, the SmartAnthill Guaranteed Delivery Protocol (`protocols/sagdp.rst`).
//!
//! SAGDP sits between SASP (below) and SACCP (above). It makes every packet of a
//! *chain* arrive exactly once: the sender of a non-terminating packet keeps a copy
//! (the Last Sent Packet, LSP) and resends it on a timer or when the peer shows, by
//! repeating its previous packet, that the LSP was lost.
//!
//! Wire format of an UP packet (what SASP carries):
//!
//! ```text
//! | First Byte | PPID or Chain ID (6 bytes, LE) | HLP packet |
//! ```
//!
//! First Byte: bit 0 is-first, bit 1 is-terminating, bit 2 requested-resend, bits 3..7
//! reserved (zero). A packet with both is-first and is-terminating is an Error Message.
//!
//! One [`Sagdp`] type implements both sides: [`Role::Slave`] (the device, which
//! re-initialises on any inconsistency) and [`Role::Master`] (the client, which ignores
//! what it does not expect and gives up after a number of resends).
//!
//! The packet ID of every packet SAGDP sends comes from SASP's nonce counter through a
//! [`PacketIdSource`]; after a handler returns, [`Sagdp::last_sent_pid`] tells the pump
//! which ID SASP must send the packet with. The ID of a received packet is passed to
//! [`Sagdp::receive`].

use crate::error::{Error, HandlerOutcome};
use crate::heap::{Handle, Heap};
use core::marker::PhantomData;
use core::num::NonZeroU64;
use crc::{Crc, NoTable, CRC_32_ISO_HDLC};

const CRC32: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISO_HDLC);

/// CRC-32 of an UP packet with its requested-resend flag cleared: what stays the
/// same when a packet is sent again.
fn digest(packet: &[u8]) -> u32 {
    let mut d = CRC32.digest();
    if let Some((first, rest)) = packet.split_first() {
        d.update(&[first & !FLAG_REQUESTED_RESEND]);
        d.update(rest);
    }
    d.finalize()
}

/// First Byte bit 0: the packet is the first of its chain.
pub const FLAG_FIRST: u8 = 0x01;
/// First Byte bit 1: the packet terminates its chain.
pub const FLAG_TERMINATING: u8 = 0x02;
/// First Byte bit 2: the packet is resent because its peer repeated a packet.
pub const FLAG_REQUESTED_RESEND: u8 = 0x04;
/// First Byte bits 3..7 are reserved and must be zero.
pub const FLAGS_RESERVED: u8 = 0xF8;
/// Size of the SAGDP header (First Byte and the 6-byte PPID / Chain ID).
pub const HEADER_LEN: usize = 7;

/// A 48-bit packet ID (SASP nonce), "PID" in the spec.
///
/// Kept with bit 63 set in a `NonZeroU64` (which keeps the order of the values),
/// so that the `Option<PacketId>` fields of [`Sagdp`] take 8 bytes each instead
/// of 16.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU64);

impl PacketId {
    /// Largest packet ID (2^48 - 1).
    pub const MAX: u64 = (1 << 48) - 1;

    /// The packet ID of a value known to be at most [`PacketId::MAX`].
    const fn of(value: u64) -> Self {
        match NonZeroU64::new((value & Self::MAX) | Self::TAG) {
            Some(v) => Self(v),
            None => Self(NonZeroU64::MIN),
        }
    }

    /// A packet ID from its numeric value; [`Error::ValueOutOfRange`] above 48 bits.
    pub const fn new(value: u64) -> Result<Self, Error> {
        if value > Self::MAX {
            Err(Error::ValueOutOfRange)
        } else {
            Ok(Self::of(value))
        }
    }

    /// The packet ID stored as 6 little-endian bytes `b0..b5`.
    pub const fn from_bytes(b: [u8; 6]) -> Self {
        Self::of(
            b[0] as u64
                | (b[1] as u64) << 8
                | (b[2] as u64) << 16
                | (b[3] as u64) << 24
                | (b[4] as u64) << 32
                | (b[5] as u64) << 40,
        )
    }

    /// The 6 little-endian bytes of this packet ID.
    pub const fn to_bytes(self) -> [u8; 6] {
        let v = self.value();
        [
            v as u8,
            (v >> 8) as u8,
            (v >> 16) as u8,
            (v >> 24) as u8,
            (v >> 32) as u8,
            (v >> 40) as u8,
        ]
    }

    /// The numeric value.
    pub const fn value(self) -> u64 {
        self.0.get() & Self::MAX
    }

    /// The bit that makes every kept value non-zero.
    const TAG: u64 = 1 << 63;
}

impl Default for PacketId {
    /// Packet ID 0.
    fn default() -> Self {
        Self::of(0)
    }
}

impl core::fmt::Debug for PacketId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("PacketId").field(&self.value()).finish()
    }
}

/// Where SAGDP gets the packet ID for each packet it sends (SASP's next nonce).
///
/// IDs must grow: each ID must be greater than every ID obtained before.
pub trait PacketIdSource {
    /// Reserves and returns the next packet ID.
    fn next_packet_id(&mut self) -> Result<PacketId, Error>;
}

impl<F: FnMut() -> Result<PacketId, Error>> PacketIdSource for F {
    fn next_packet_id(&mut self) -> Result<PacketId, Error> {
        self()
    }
}

/// The position of a packet in its chain (plus the Error Message kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketStatus {
    /// First packet of a chain; its header carries the Chain ID.
    First,
    /// Neither first nor terminating.
    Intermediate,
    /// Last packet of a chain: no reply is expected.
    Terminating,
    /// An Error Message (is-first and is-terminating both set).
    ErrorMessage,
}

impl PacketStatus {
    /// The First Byte flags for this status (without requested-resend).
    pub const fn flags(self) -> u8 {
        match self {
            PacketStatus::First => FLAG_FIRST,
            PacketStatus::Intermediate => 0,
            PacketStatus::Terminating => FLAG_TERMINATING,
            PacketStatus::ErrorMessage => FLAG_FIRST | FLAG_TERMINATING,
        }
    }

    /// The status encoded by bits 0 and 1 of a First Byte.
    pub const fn from_flags(flags: u8) -> Self {
        match flags & (FLAG_FIRST | FLAG_TERMINATING) {
            FLAG_FIRST => PacketStatus::First,
            FLAG_TERMINATING => PacketStatus::Terminating,
            0 => PacketStatus::Intermediate,
            _ => PacketStatus::ErrorMessage,
        }
    }
}

/// A parsed SAGDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Chain position from bits 0 and 1.
    pub status: PacketStatus,
    /// Bit 2, requested-resend.
    pub requested_resend: bool,
    /// Chain ID for a first packet, PPID otherwise.
    pub id_field: PacketId,
}

impl Header {
    /// Parses the 7-byte header at the start of `bytes`.
    ///
    /// [`Error::UnexpectedEnd`] if fewer than 7 bytes, [`Error::Malformed`] if a
    /// reserved bit is set.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (&first, rest) = bytes.split_first().ok_or(Error::UnexpectedEnd)?;
        let id = *rest.first_chunk::<6>().ok_or(Error::UnexpectedEnd)?;
        if first & FLAGS_RESERVED != 0 {
            return Err(Error::Malformed);
        }
        Ok(Self {
            status: PacketStatus::from_flags(first),
            requested_resend: first & FLAG_REQUESTED_RESEND != 0,
            id_field: PacketId::from_bytes(id),
        })
    }

    /// The 7 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let resend = if self.requested_resend {
            FLAG_REQUESTED_RESEND
        } else {
            0
        };
        let id = self.id_field.to_bytes();
        out[0] = self.status.flags() | resend;
        out[1..].copy_from_slice(&id);
        out
    }
}

/// The four SAGDP states (sagdp.rst section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// At start and after an inconsistency: only [`Sagdp::init`] is accepted.
    NotInitialized,
    /// No chain in progress.
    Idle,
    /// A packet was delivered upwards; waiting for the higher layer's reply.
    WaitLocal,
    /// A non-terminating packet was sent; waiting for the peer's reply.
    WaitRemote,
}

/// Which side of the asymmetric protocol this instance plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The device: re-initialises on inconsistencies, restarts on a new master chain.
    Slave,
    /// The client: ignores unexpected packets, gives up after `max_resends`.
    Master,
}

/// Resend timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// Time from sending a packet to its first resend.
    pub initial_timeout_ms: u32,
    /// The interval doubles after each timer resend up to this value.
    pub max_timeout_ms: u32,
    /// Timer resends before giving up (`None`: never give up, the device's default).
    pub max_resends: Option<u8>,
}

impl Config {
    /// Device defaults: 1 s doubling up to 8 s, resending forever.
    pub const SLAVE: Config = Config {
        initial_timeout_ms: 1000,
        max_timeout_ms: 8000,
        max_resends: None,
    };
    /// Client defaults: 500 ms doubling up to 4 s, giving up after 6 resends.
    pub const MASTER: Config = Config {
        initial_timeout_ms: 500,
        max_timeout_ms: 4000,
        max_resends: Some(6),
    };
}

/// An inclusive range of packet IDs used for one sent packet (first send..last resend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdRange {
    lo: PacketId,
    hi: PacketId,
}

impl IdRange {
    const fn one(id: PacketId) -> Self {
        Self { lo: id, hi: id }
    }
    fn contains(&self, id: PacketId) -> bool {
        self.lo <= id && id <= self.hi
    }
}

/// What [`Sagdp::receive`] does with a packet.
#[derive(Clone, Copy)]
enum Act {
    /// Pass it up and go to the state; first abandon the chain if the flag is set.
    Deliver(State, bool),
    /// Answer the repeated packet with the LSP (unless it asks for a resend).
    Duplicate,
    Ignore,
    /// Out of the chain: a slave fails, a master ignores it.
    Inconsistent,
    /// An Error Message to a slave.
    Fail,
}

/// How a received PPID relates to what we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Within LSPIDR: a reply to the last sent packet.
    Last,
    /// Below LSPIDR, within PSPIDR: the peer repeats its previous packet.
    Previous,
    /// Anything else (below both, above LSPIDR, or nothing sent yet).
    Broken,
}

/// The resend deadline when no timer runs: a time no millisecond clock reaches (584
/// million years), so it needs no `Option` (8 bytes less in every device). A
/// running timer never lands there ([`deadline_after`]).
const NO_DEADLINE: u64 = u64::MAX;

/// The deadline `interval_ms` after `now_ms`: saturated one below [`NO_DEADLINE`],
/// so that a clock near its end still has a timer that fires, not none. (Out of
/// line: its 64-bit saturating sum is one copy for its three callers.)
#[inline(never)]
const fn deadline_after(now_ms: u64, interval_ms: u32) -> u64 {
    let d = now_ms.saturating_add(interval_ms as u64);
    if d == NO_DEADLINE {
        NO_DEADLINE - 1
    } else {
        d
    }
}

/// Which roles a [`Sagdp`] can take, fixed by its type: [`DeviceOnly`] (a device's,
/// whose code has no master paths) or [`EitherRole`] (chosen when it is made).
pub trait RoleKind: Copy + core::fmt::Debug {
    /// The role every instance of the type has, if the type fixes one.
    const FIXED: Option<Role>;
    /// The timing every instance of the type has, if the type fixes it.
    const TIMING: Option<Config>;
}

/// A [`Sagdp`] that is a device (the slave, with [`Config::SLAVE`]) by its type
/// ([`Sagdp::slave`]).
#[derive(Debug, Clone, Copy)]
pub struct DeviceOnly;

impl RoleKind for DeviceOnly {
    const FIXED: Option<Role> = Some(Role::Slave);
    const TIMING: Option<Config> = Some(Config::SLAVE);
}

/// A [`Sagdp`] whose role is given when it is made ([`Sagdp::new`],
/// [`Sagdp::master`]).
#[derive(Debug, Clone, Copy)]
pub struct EitherRole;

impl RoleKind for EitherRole {
    const FIXED: Option<Role> = None;
    const TIMING: Option<Config> = None;
}

/// The SAGDP state machine (fixed-size state plus one heap handle holding the LSP).
/// A device's instance is a `Sagdp` ([`DeviceOnly`]); a client's, or one whose
/// role is chosen at run time, a `Sagdp<EitherRole>`.
#[derive(Debug, Clone)]
pub struct Sagdp<R: RoleKind = DeviceOnly> {
    role: Role,
    kind: PhantomData<R>,
    config: Config,
    state: State,
    lsp: Option<Handle>,
    lsp_valid: bool,
    lrcid: Option<PacketId>,
    lrpid: Option<PacketId>,
    lspidr: Option<IdRange>,
    pspidr: Option<IdRange>,
    /// When the resend timer fires; [`NO_DEADLINE`] when none runs.
    deadline_ms: u64,
    interval_ms: u32,
    resends: u8,
    last_sent_pid: Option<PacketId>,
    received: Option<PacketStatus>,
    /// Digests ([`digest`]) of the last packet delivered up and of the packet the
    /// LSP answers (0: none): only a packet with one of them is a retransmission,
    /// which may be ignored or answered with the LSP.
    lr_digest: u32,
    answered_digest: u32,
}

impl Sagdp<EitherRole> {
    /// A new, not yet initialised instance.
    pub const fn new(role: Role, config: Config) -> Self {
        Self::make(role, config)
    }

    /// A client-side instance with [`Config::MASTER`].
    pub const fn master() -> Self {
        Self::new(Role::Master, Config::MASTER)
    }
}

impl Sagdp<DeviceOnly> {
    /// A device-side instance with [`Config::SLAVE`].
    pub const fn slave() -> Self {
        Self::make(Role::Slave, Config::SLAVE)
    }
}

impl<R: RoleKind> Sagdp<R> {
    /// A new, not yet initialised instance (`role` and `config` are the type's, if
    /// it fixes them).
    const fn make(role: Role, config: Config) -> Self {
        let config = match R::TIMING {
            Some(c) => c,
            None => config,
        };
        Self {
            role: match R::FIXED {
                Some(r) => r,
                None => role,
            },
            kind: PhantomData,
            config,
            state: State::NotInitialized,
            lsp: None,
            lsp_valid: false,
            lrcid: None,
            lrpid: None,
            lspidr: None,
            pspidr: None,
            deadline_ms: NO_DEADLINE,
            interval_ms: config.initial_timeout_ms,
            resends: 0,
            last_sent_pid: None,
            received: None,
            lr_digest: 0,
            answered_digest: 0,
        }
    }

    /// The "initializing" event: allocates the LSP handle (first call) or empties it,
    /// drops all chain data and enters [`State::Idle`].
    ///
    /// After the whole heap was reset, call [`heap_was_reset`](Self::heap_was_reset)
    /// first (the old handle is no longer ours).
    pub fn init(&mut self, heap: &mut Heap<'_>) -> Result<(), Error> {
        let lsp = match self.lsp {
            Some(h) if heap.clear_reply(h).is_ok() => h,
            _ => heap.alloc()?,
        };
        self.forget(Some(lsp));
        self.state = State::Idle;
        Ok(())
    }

    /// Forgets the LSP handle after the whole heap was reset (the block may now be
    /// another owner's), so that [`init`](Self::init) allocates a new one.
    pub fn heap_was_reset(&mut self) {
        self.lsp = None;
    }

    /// Drops all chain data ([`State::NotInitialized`]), keeping `lsp` as the LSP
    /// handle.
    #[inline(never)]
    fn forget(&mut self, lsp: Option<Handle>) {
        // Field by field, in place (role and timing stay): what `make` gives. (The
        // pattern names every field: a new one must be reset here too.)
        let interval = self.timing().initial_timeout_ms;
        let Self {
            role: _,
            kind: _,
            config: _,
            state,
            lsp: kept,
            lsp_valid,
            lrcid,
            lrpid,
            lspidr,
            pspidr,
            deadline_ms,
            interval_ms,
            resends,
            last_sent_pid,
            received,
            lr_digest,
            answered_digest,
        } = self;
        *state = State::NotInitialized;
        *kept = lsp;
        *lsp_valid = false;
        *lrcid = None;
        *lrpid = None;
        *lspidr = None;
        *pspidr = None;
        *deadline_ms = NO_DEADLINE;
        *interval_ms = interval;
        *resends = 0;
        *last_sent_pid = None;
        *received = None;
        *lr_digest = 0;
        *answered_digest = 0;
    }

    /// The current state.
    pub const fn state(&self) -> State {
        self.state
    }

    /// The timing given at construction.
    const fn timing(&self) -> Config {
        match R::TIMING {
            Some(c) => c,
            None => self.config,
        }
    }

    /// The role given at construction.
    pub const fn role(&self) -> Role {
        match R::FIXED {
            Some(r) => r,
            None => self.role,
        }
    }

    /// After [`receive`](Self::receive) returned [`HandlerOutcome::Pass`]: the chain
    /// position of the payload it delivered.
    pub const fn received_status(&self) -> Option<PacketStatus> {
        self.received
    }

    /// The packet ID of the packet most recently written for sending (new or resent);
    /// SASP must send it with this ID.
    pub const fn last_sent_pid(&self) -> Option<PacketId> {
        self.last_sent_pid
    }

    /// The Last Received Chain ID.
    pub const fn last_received_chain_id(&self) -> Option<PacketId> {
        self.lrcid
    }

    /// Milliseconds from `now_ms` until the resend timer fires (0 if it is due), or
    /// `None` when no timer runs.
    pub fn next_timeout_ms(&self, now_ms: u64) -> Option<u64> {
        (self.deadline_ms != NO_DEADLINE).then(|| self.deadline_ms.saturating_sub(now_ms))
    }

    /// Handles a packet from SASP: the request of `h` is the UP packet, `pid` its
    /// packet ID.
    ///
    /// * [`HandlerOutcome::Pass`]: the reply is the HLP payload for SACCP, its chain
    ///   position is [`received_status`](Self::received_status).
    /// * [`HandlerOutcome::ReplyDown`]: the reply is the resent LSP for SASP send (with
    ///   [`last_sent_pid`](Self::last_sent_pid)).
    /// * [`HandlerOutcome::IgnorePacket`]: nothing to do (duplicate, or, for a master,
    ///   an unexpected packet).
    /// * [`HandlerOutcome::FatalErrorReinit`] (slave only): the chain is broken; the
    ///   reply is an Error Message to send (through SASP) before re-initialising. This
    ///   instance is already in [`State::NotInitialized`].
    ///
    /// A packet shorter than the header or with reserved bits set is
    /// [`Error::UnexpectedEnd`] / [`Error::Malformed`] and changes nothing.
    #[inline(never)]
    pub fn receive(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        pid: PacketId,
        now_ms: u64,
        ids: &mut dyn PacketIdSource,
    ) -> Result<HandlerOutcome, Error> {
        if self.state == State::NotInitialized {
            return Err(Error::InvalidState);
        }
        // The packet's digest, computed once: whether it repeats the last one, and
        // what is kept of it when it is delivered.
        let (hdr, d) = {
            let req = heap.request(h)?;
            (Header::parse(req)?, digest(req))
        };
        heap.clear_reply(h)?;
        self.received = None;
        let master = matches!(self.role(), Role::Master);
        let rel = self.relate(hdr.id_field);
        // What to do, decided first; each action is then taken in one place.
        let act = match hdr.status {
            PacketStatus::ErrorMessage => {
                if master {
                    Act::Deliver(State::Idle, true)
                } else {
                    Act::Fail
                }
            }
            PacketStatus::First => {
                if Some(hdr.id_field) == self.lrcid && self.is_repeat(d) {
                    // The first packet of the current chain again.
                    match self.state {
                        State::WaitLocal => Act::Ignore,
                        _ => Act::Duplicate,
                    }
                } else {
                    match (self.state, master) {
                        (State::Idle, _) => Act::Deliver(State::WaitLocal, false),
                        // The master starts a new chain: it is always right.
                        (_, false) => Act::Deliver(State::WaitLocal, true),
                        (_, true) => Act::Ignore,
                    }
                }
            }
            PacketStatus::Intermediate => match (self.state, rel) {
                (State::WaitRemote, Relation::Last) => Act::Deliver(State::WaitLocal, false),
                (State::Idle | State::WaitRemote, Relation::Previous) if self.is_repeat(d) => {
                    Act::Duplicate
                }
                (State::WaitLocal, Relation::Last) => Act::Ignore,
                _ => Act::Inconsistent,
            },
            PacketStatus::Terminating => match (self.state, rel) {
                (State::WaitRemote, Relation::Last) => Act::Deliver(State::Idle, false),
                (State::Idle, Relation::Last) => Act::Ignore,
                _ => Act::Inconsistent,
            },
        };
        match act {
            Act::Deliver(next, drop_chain) => {
                if drop_chain {
                    self.drop_chain();
                }
                self.deliver(heap, h, pid, hdr, d, next)
            }
            Act::Duplicate => self.duplicate(heap, h, hdr, now_ms, ids),
            Act::Ignore => Ok(HandlerOutcome::IgnorePacket),
            Act::Inconsistent => self.inconsistent(heap, h, pid),
            Act::Fail => self.fail(heap, h, pid),
        }
    }

    /// Handles a packet from SACCP: the request of `h` is the HLP packet, `status`
    /// its chain position. On [`HandlerOutcome::Pass`] the reply is the UP packet for
    /// SASP send (with [`last_sent_pid`](Self::last_sent_pid)).
    ///
    /// A send that does not fit the state (e.g. a non-first packet in `Idle`) is an
    /// inconsistency: a slave answers [`HandlerOutcome::FatalErrorReinit`] with an
    /// Error Message as reply; a master returns to `Idle` and reports
    /// [`Error::InvalidState`]. Sending an Error Message this way is
    /// [`Error::InvalidState`] and changes nothing.
    #[inline(never)]
    pub fn send(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        status: PacketStatus,
        now_ms: u64,
        ids: &mut dyn PacketIdSource,
    ) -> Result<HandlerOutcome, Error> {
        if status == PacketStatus::ErrorMessage || self.state == State::NotInitialized {
            return Err(Error::InvalidState);
        }
        // A chain starts from Idle; its other packets answer in WaitLocal.
        let first = status == PacketStatus::First;
        let id_field = match (self.state, first) {
            (State::Idle, true) => None,
            (State::WaitLocal, false) => Some(self.lrpid.ok_or(Error::InvalidState)?),
            _ => {
                return match self.role() {
                    Role::Slave => {
                        let pid = self.lrpid.unwrap_or_default();
                        self.fail(heap, h, pid)
                    }
                    Role::Master => {
                        self.drop_chain();
                        Err(Error::InvalidState)
                    }
                }
            }
        };
        let pid = self.fresh_pid(ids)?;
        let hdr = Header {
            status,
            requested_resend: false,
            id_field: id_field.unwrap_or(pid),
        };
        heap.clear_reply(h)?;
        heap.wrap_request(h, &hdr.to_bytes())?;
        // Keep the LSP for resends.
        let lsp = self.lsp.ok_or(Error::InvalidState)?;
        self.lsp_valid = false;
        heap.set_reply_of(lsp, h)?;
        self.lsp_valid = true;
        self.pspidr = self.lspidr;
        self.lspidr = Some(IdRange::one(pid));
        self.answered_digest = self.lr_digest;
        self.last_sent_pid = Some(pid);
        self.resends = 0;
        self.interval_ms = self.timing().initial_timeout_ms;
        if status == PacketStatus::Terminating {
            self.state = State::Idle;
            self.deadline_ms = NO_DEADLINE;
        } else {
            self.state = State::WaitRemote;
            self.deadline_ms = deadline_after(now_ms, self.interval_ms);
        }
        Ok(HandlerOutcome::Pass)
    }

    /// Timer event: if the resend timer is due, writes the LSP as the reply of `h`
    /// (whose request is ignored) and returns [`HandlerOutcome::ReplyDown`]; the
    /// interval then doubles up to `max_timeout_ms`. If nothing is due, returns
    /// [`HandlerOutcome::IgnorePacket`]. A master that has used up `max_resends`
    /// returns to `Idle` and reports [`Error::Timeout`].
    pub fn on_timeout(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        now_ms: u64,
        ids: &mut dyn PacketIdSource,
    ) -> Result<HandlerOutcome, Error> {
        if self.deadline_ms == NO_DEADLINE
            || self.state != State::WaitRemote
            || self.deadline_ms > now_ms
        {
            return Ok(HandlerOutcome::IgnorePacket);
        }
        if let Some(max) = self.timing().max_resends {
            if self.resends >= max {
                self.drop_chain();
                return Err(Error::Timeout);
            }
        }
        let out = self.resend(heap, h, false, now_ms, ids)?;
        self.resends = self.resends.saturating_add(1);
        self.interval_ms = self
            .interval_ms
            .saturating_mul(2)
            .min(self.timing().max_timeout_ms);
        self.deadline_ms = deadline_after(now_ms, self.interval_ms);
        Ok(out)
    }

    /// "Request to resend LSP" from the layer below (sagdp.rst 4.2): in `WaitRemote`,
    /// writes the LSP as the reply of `h` and restarts the timer
    /// ([`HandlerOutcome::ReplyDown`]). In other states this is an inconsistency
    /// (slave: Error Message and [`HandlerOutcome::FatalErrorReinit`]; master:
    /// [`Error::InvalidState`], back to `Idle`).
    pub fn request_resend(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        now_ms: u64,
        ids: &mut dyn PacketIdSource,
    ) -> Result<HandlerOutcome, Error> {
        match self.state {
            State::NotInitialized => Err(Error::InvalidState),
            State::WaitRemote => self.resend(heap, h, false, now_ms, ids),
            _ => match self.role() {
                Role::Slave => {
                    let pid = self.lrpid.unwrap_or_default();
                    self.fail(heap, h, pid)
                }
                Role::Master => {
                    self.drop_chain();
                    Err(Error::InvalidState)
                }
            },
        }
    }

    fn relate(&self, ppid: PacketId) -> Relation {
        // PSPIDR lies below LSPIDR whenever both are set (`send` moves LSPIDR to
        // PSPIDR and starts LSPIDR above it, resends only raise LSPIDR's top): an
        // ID within PSPIDR is below LSPIDR's start (and PSPIDR is set only with LSPIDR).
        // Test builds check this on every packet (the property and lossy-link tests).
        debug_assert!(match (self.lspidr, self.pspidr) {
            (Some(l), Some(p)) => p.hi < l.lo,
            (None, Some(_)) => false,
            _ => true,
        });
        match (self.lspidr, self.pspidr) {
            (Some(l), _) if l.contains(ppid) => Relation::Last,
            (_, Some(p)) if p.contains(ppid) => Relation::Previous,
            _ => Relation::Broken,
        }
    }

    /// Gets a new packet ID, checking that IDs grow.
    fn fresh_pid(&self, ids: &mut dyn PacketIdSource) -> Result<PacketId, Error> {
        let pid = ids.next_packet_id()?;
        match self.lspidr {
            Some(r) if pid <= r.hi => Err(Error::InvalidState),
            _ => Ok(pid),
        }
    }

    /// Passes the payload of the received packet (of digest `d`) up.
    fn deliver(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        pid: PacketId,
        hdr: Header,
        d: u32,
        next: State,
    ) -> Result<HandlerOutcome, Error> {
        // The payload after the header becomes the reply in place.
        heap.split_request(h, HEADER_LEN)?;
        if hdr.status == PacketStatus::First {
            self.lrcid = Some(hdr.id_field);
        }
        self.lr_digest = d;
        self.lrpid = Some(pid);
        self.state = next;
        self.deadline_ms = NO_DEADLINE;
        self.received = Some(hdr.status);
        Ok(HandlerOutcome::Pass)
    }

    /// True if the received packet, of digest `d`, is the packet delivered last,
    /// sent again: the same bytes but for the requested-resend flag. A different
    /// packet under the same IDs (a peer that lost its state and reused a nonce, or
    /// a second client on the key) is never answered with the reply to someone
    /// else's packet.
    fn is_repeat(&self, d: u32) -> bool {
        d != 0 && (d == self.lr_digest || d == self.answered_digest)
    }

    /// A repeated packet: resend the LSP unless the repetition is itself a requested
    /// resend (sagdp.rst 2.4).
    fn duplicate(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hdr: Header,
        now_ms: u64,
        ids: &mut dyn PacketIdSource,
    ) -> Result<HandlerOutcome, Error> {
        if hdr.requested_resend || !self.lsp_valid {
            return Ok(HandlerOutcome::IgnorePacket);
        }
        self.resend(heap, h, true, now_ms, ids)
    }

    fn resend(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        requested: bool,
        now_ms: u64,
        ids: &mut dyn PacketIdSource,
    ) -> Result<HandlerOutcome, Error> {
        let lsp = match self.lsp {
            Some(l) if self.lsp_valid => l,
            _ => return Ok(HandlerOutcome::IgnorePacket),
        };
        let pid = self.fresh_pid(ids)?;
        heap.set_reply_of(h, lsp)?;
        {
            let reply = heap.reply_mut(h)?;
            let first = reply.first_mut().ok_or(Error::InvalidState)?;
            if requested {
                *first |= FLAG_REQUESTED_RESEND;
            } else {
                *first &= !FLAG_REQUESTED_RESEND;
            }
        }
        if let Some(r) = self.lspidr.as_mut() {
            r.hi = pid;
        }
        self.last_sent_pid = Some(pid);
        if self.state == State::WaitRemote {
            self.deadline_ms = deadline_after(now_ms, self.interval_ms);
        }
        Ok(HandlerOutcome::ReplyDown)
    }

    fn inconsistent(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        pid: PacketId,
    ) -> Result<HandlerOutcome, Error> {
        match self.role() {
            Role::Slave => self.fail(heap, h, pid),
            Role::Master => Ok(HandlerOutcome::IgnorePacket),
        }
    }

    /// Slave inconsistency: reply with an Error Message naming `pid` and invalidate
    /// everything.
    fn fail(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        pid: PacketId,
    ) -> Result<HandlerOutcome, Error> {
        let msg = Header {
            status: PacketStatus::ErrorMessage,
            requested_resend: false,
            id_field: pid,
        };
        heap.clear_reply(h)?;
        let res = heap.append_reply(h, &msg.to_bytes());
        if let Some(lsp) = self.lsp {
            // Best effort: the data is invalid either way.
            let _ = heap.clear_reply(lsp);
        }
        self.forget(self.lsp);
        res?;
        Ok(HandlerOutcome::FatalErrorReinit)
    }

    /// Abandons the current chain (keeps chain IDs so late repeats are recognised).
    fn drop_chain(&mut self) {
        self.state = State::Idle;
        self.deadline_ms = NO_DEADLINE;
        self.lsp_valid = false;
        self.lspidr = None;
        self.pspidr = None;
        self.resends = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::HeapMem;
    use proptest::prelude::*;

    type H = HeapMem<512, 6>;

    /// SASP's nonce counter stand-in.
    struct Ids(u64);
    impl PacketIdSource for Ids {
        fn next_packet_id(&mut self) -> Result<PacketId, Error> {
            self.0 += 1;
            PacketId::new(self.0)
        }
    }

    /// A packet-ID source that returns `next` (whatever it is) or fails.
    struct WildIds {
        next: u64,
        fails: bool,
    }
    impl PacketIdSource for WildIds {
        fn next_packet_id(&mut self) -> Result<PacketId, Error> {
            if self.fails {
                return Err(Error::NonceExhausted);
            }
            PacketId::new(self.next)
        }
    }

    fn pid(v: u64) -> PacketId {
        PacketId::new(v).unwrap()
    }

    /// An UP packet: flags, 6-byte LE id field, payload.
    fn up(flags: u8, id: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![flags];
        v.extend_from_slice(&id.to_le_bytes()[..6]);
        v.extend_from_slice(payload);
        v
    }

    struct Rig {
        heap: H,
        s: Sagdp<EitherRole>,
        h: Handle,
        ids: Ids,
    }

    impl Rig {
        fn new(role: Role) -> Self {
            let mut heap_mem = H::new();
            let mut heap = heap_mem.heap();
            let mut s = Sagdp::new(
                role,
                if role == Role::Slave {
                    Config::SLAVE
                } else {
                    Config::MASTER
                },
            );
            s.init(&mut heap).unwrap();
            let h = heap.alloc().unwrap();
            Rig {
                heap: heap_mem,
                s,
                h,
                ids: Ids(200),
            }
        }
        fn recv(&mut self, bytes: &[u8], p: u64, now: u64) -> HandlerOutcome {
            self.heap.heap().set_request(self.h, bytes).unwrap();
            self.s
                .receive(&mut self.heap.heap(), self.h, pid(p), now, &mut self.ids)
                .unwrap()
        }
        fn send(&mut self, payload: &[u8], st: PacketStatus, now: u64) -> HandlerOutcome {
            self.heap.heap().set_request(self.h, payload).unwrap();
            self.s
                .send(&mut self.heap.heap(), self.h, st, now, &mut self.ids)
                .unwrap()
        }
        fn timeout(&mut self, now: u64) -> Result<HandlerOutcome, Error> {
            self.heap.heap().set_request(self.h, &[]).unwrap();
            self.s
                .on_timeout(&mut self.heap.heap(), self.h, now, &mut self.ids)
        }
        fn reply(&self) -> Vec<u8> {
            self.heap.reply(self.h).unwrap().to_vec()
        }
        /// Slave: receive the first packet of chain 100 (pid 100) and answer with an
        /// intermediate packet (pid 201).
        fn in_wait_remote(&mut self) {
            assert_eq!(
                self.recv(&up(0x01, 100, b"go"), 100, 0),
                HandlerOutcome::Pass
            );
            assert_eq!(
                self.send(b"r1", PacketStatus::Intermediate, 0),
                HandlerOutcome::Pass
            );
            assert_eq!(self.s.state(), State::WaitRemote);
        }
    }

    #[test]
    fn header_layout_is_byte_exact() {
        let h = Header {
            status: PacketStatus::First,
            requested_resend: false,
            id_field: PacketId::from_bytes([1, 2, 3, 4, 5, 6]),
        };
        assert_eq!(h.to_bytes(), [0x01, 1, 2, 3, 4, 5, 6]);
        assert_eq!(h.id_field.value(), 0x0605_0403_0201);
        let t = Header {
            status: PacketStatus::Terminating,
            requested_resend: true,
            id_field: pid(0x1234),
        };
        assert_eq!(t.to_bytes(), [0x06, 0x34, 0x12, 0, 0, 0, 0]);
        assert_eq!(
            Header::parse(&[0x03, 0, 0, 0, 0, 0, 0]).unwrap().status,
            PacketStatus::ErrorMessage
        );
        assert_eq!(
            Header::parse(&[0x00, 9, 0, 0, 0, 0, 0, 0xAA])
                .unwrap()
                .status,
            PacketStatus::Intermediate
        );
        assert_eq!(
            Header::parse(&[0x08, 0, 0, 0, 0, 0, 0]),
            Err(Error::Malformed)
        );
        assert_eq!(
            Header::parse(&[0x01, 0, 0, 0, 0, 0]),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(Header::parse(&[]), Err(Error::UnexpectedEnd));
        assert_eq!(PacketId::new(1 << 48), Err(Error::ValueOutOfRange));
        assert_eq!(PacketId::new(PacketId::MAX).unwrap().to_bytes(), [0xFF; 6]);
    }

    #[test]
    fn slave_two_packet_chain() {
        let mut r = Rig::new(Role::Slave);
        assert_eq!(r.s.state(), State::Idle);
        assert_eq!(
            r.recv(&up(0x01, 100, &[0xAA, 0xBB]), 100, 0),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0xAA, 0xBB]);
        assert_eq!(r.s.received_status(), Some(PacketStatus::First));
        assert_eq!(r.s.state(), State::WaitLocal);
        assert_eq!(r.s.last_received_chain_id(), Some(pid(100)));
        assert_eq!(r.s.next_timeout_ms(0), None);
        // The terminating reply names the received packet (pid 100) as its PPID.
        assert_eq!(
            r.send(&[0xCC], PacketStatus::Terminating, 5),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0x02, 100, 0, 0, 0, 0, 0, 0xCC]);
        assert_eq!(r.s.last_sent_pid(), Some(pid(201)));
        assert_eq!(r.s.state(), State::Idle);
        assert_eq!(r.s.next_timeout_ms(5), None);
    }

    #[test]
    fn a_different_first_packet_under_the_same_chain_id_is_a_new_chain() {
        // A client that lost its state reuses chain ID 100 for another command: the
        // device must run it, never answer with the reply to the old one.
        let mut r = Rig::new(Role::Slave);
        r.recv(&up(0x01, 100, b"aa"), 100, 0);
        r.send(b"reply-aa", PacketStatus::Terminating, 0);
        assert_eq!(r.recv(&up(0x01, 100, b"bb"), 102, 10), HandlerOutcome::Pass);
        assert_eq!(r.reply(), b"bb");
        assert_eq!(r.s.state(), State::WaitLocal);
        // Its own reply, and a true repeat of *it* gets that reply again.
        r.send(b"reply-bb", PacketStatus::Terminating, 10);
        assert_eq!(
            r.recv(&up(0x05, 100, b"bb"), 103, 20),
            HandlerOutcome::IgnorePacket,
            "a requested-resend repeat is not answered twice"
        );
        assert_eq!(
            r.recv(&up(0x01, 100, b"bb"), 104, 20),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.reply()[7..], *b"reply-bb");
        // While a command runs, its repeat is ignored but another command replaces it.
        assert_eq!(r.recv(&up(0x01, 300, b"cc"), 300, 30), HandlerOutcome::Pass);
        assert_eq!(
            r.recv(&up(0x01, 300, b"cc"), 301, 30),
            HandlerOutcome::IgnorePacket
        );
        assert_eq!(r.recv(&up(0x01, 300, b"dd"), 302, 30), HandlerOutcome::Pass);
        assert_eq!(r.reply(), b"dd");
    }

    #[test]
    fn a_different_packet_posing_as_a_repeat_is_refused() {
        // Slave in WaitRemote: the master "repeats" its first packet (PPID in PSPIDR)
        // but with other bytes: an inconsistency, answered with an Error Message.
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote(); // sent r1 as pid 201
        assert_eq!(r.recv(&up(0x00, 201, b"i2"), 102, 0), HandlerOutcome::Pass);
        r.send(b"r3", PacketStatus::Intermediate, 0);
        assert_eq!(
            r.recv(&up(0x00, 201, b"XX"), 104, 40),
            HandlerOutcome::FatalErrorReinit
        );
        assert_eq!(r.reply()[0], 0x03);
        // Master: a forged-looking repeat is ignored, a true one answered.
        let mut m = Rig::new(Role::Master);
        m.send(b"cmd", PacketStatus::First, 0);
        assert_eq!(m.recv(&up(0x00, 201, b"r1"), 50, 5), HandlerOutcome::Pass);
        m.send(b"i2", PacketStatus::Intermediate, 5);
        assert_eq!(
            m.recv(&up(0x00, 201, b"zz"), 51, 6),
            HandlerOutcome::IgnorePacket
        );
        assert_eq!(
            m.recv(&up(0x00, 201, b"r1"), 52, 7),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(m.reply()[7..], *b"i2");
    }

    #[test]
    fn slave_resends_terminating_reply_when_master_repeats_first() {
        let mut r = Rig::new(Role::Slave);
        r.recv(&up(0x01, 100, b"cmd"), 100, 0);
        r.send(b"ok", PacketStatus::Terminating, 0);
        // Our reply was lost; the master resends its first packet (new pid, same chain).
        assert_eq!(
            r.recv(&up(0x01, 100, b"cmd"), 101, 10),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.reply(), [0x06, 100, 0, 0, 0, 0, 0, b'o', b'k']);
        assert_eq!(r.s.last_sent_pid(), Some(pid(202)));
        assert_eq!(r.s.state(), State::Idle);
        // A repeat that is itself a requested resend gets no answer (sagdp.rst 2.4).
        assert_eq!(
            r.recv(&up(0x05, 100, b"cmd"), 102, 20),
            HandlerOutcome::IgnorePacket
        );
        // A terminating packet answering our (resent) reply: already done, ignored.
        assert_eq!(
            r.recv(&up(0x02, 202, b""), 103, 30),
            HandlerOutcome::IgnorePacket
        );
        assert_eq!(
            r.recv(&up(0x02, 201, b""), 104, 30),
            HandlerOutcome::IgnorePacket
        );
    }

    #[test]
    fn slave_long_chain_with_timer_and_backoff() {
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote();
        assert_eq!(r.reply(), [0x00, 100, 0, 0, 0, 0, 0, b'r', b'1']);
        assert_eq!(r.s.next_timeout_ms(0), Some(1000));
        assert_eq!(r.timeout(999), Ok(HandlerOutcome::IgnorePacket));
        assert_eq!(r.timeout(1000), Ok(HandlerOutcome::ReplyDown));
        // A timer resend does not carry requested-resend.
        assert_eq!(r.reply(), [0x00, 100, 0, 0, 0, 0, 0, b'r', b'1']);
        assert_eq!(r.s.last_sent_pid(), Some(pid(202)));
        assert_eq!(r.s.next_timeout_ms(1000), Some(2000));
        assert_eq!(r.timeout(3000), Ok(HandlerOutcome::ReplyDown));
        assert_eq!(r.s.next_timeout_ms(3000), Some(4000));
        assert_eq!(r.timeout(7000), Ok(HandlerOutcome::ReplyDown));
        assert_eq!(r.timeout(15000), Ok(HandlerOutcome::ReplyDown));
        // Capped at max_timeout_ms; a slave never gives up.
        assert_eq!(r.s.next_timeout_ms(15000), Some(8000));
        for k in 0..20 {
            assert_eq!(r.timeout(23000 + k * 8000), Ok(HandlerOutcome::ReplyDown));
        }
        // The master answers the first copy (pid 201): still within LSPIDR.
        assert_eq!(
            r.recv(&up(0x00, 201, b"i2"), 110, 200_000),
            HandlerOutcome::Pass
        );
        assert_eq!(r.s.received_status(), Some(PacketStatus::Intermediate));
        assert_eq!(r.reply(), b"i2");
        assert_eq!(r.s.state(), State::WaitLocal);
        assert_eq!(r.s.next_timeout_ms(200_000), None);
        assert_eq!(
            r.send(b"r2", PacketStatus::Intermediate, 200_000),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0x00, 110, 0, 0, 0, 0, 0, b'r', b'2']);
        // The backoff starts over for a new packet.
        assert_eq!(r.s.next_timeout_ms(200_000), Some(1000));
        let last = r.s.last_sent_pid().unwrap().value();
        assert_eq!(
            r.recv(&up(0x02, last, b"end"), 111, 200_010),
            HandlerOutcome::Pass
        );
        assert_eq!(r.s.received_status(), Some(PacketStatus::Terminating));
        assert_eq!(r.s.state(), State::Idle);
        assert_eq!(r.timeout(500_000), Ok(HandlerOutcome::IgnorePacket));
    }

    #[test]
    fn slave_answers_repeated_previous_packet_in_wait_remote() {
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote(); // sent r1 as pid 201
        assert_eq!(r.recv(&up(0x00, 201, b"i2"), 102, 0), HandlerOutcome::Pass);
        assert_eq!(
            r.send(b"r3", PacketStatus::Intermediate, 0),
            HandlerOutcome::Pass
        ); // pid 202
           // The master did not get r3 and repeats i2 (PPID 201, in PSPIDR).
        assert_eq!(
            r.recv(&up(0x00, 201, b"i2"), 103, 50),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.reply(), [0x04, 102, 0, 0, 0, 0, 0, b'r', b'3']);
        assert_eq!(r.s.last_sent_pid(), Some(pid(203)));
        assert_eq!(r.s.state(), State::WaitRemote);
        // The timer restarted with the resend.
        assert_eq!(r.s.next_timeout_ms(50), Some(1000));
        // Repeated with requested-resend: no second answer.
        assert_eq!(
            r.recv(&up(0x04, 201, b"i2"), 104, 60),
            HandlerOutcome::IgnorePacket
        );
        // The master's reply to the resent copy (PPID 203) is accepted.
        assert_eq!(r.recv(&up(0x02, 203, b"t"), 105, 70), HandlerOutcome::Pass);
        assert_eq!(r.s.state(), State::Idle);
        // A late repeat of the previous packet in idle resends our last packet.
        assert_eq!(
            r.recv(&up(0x00, 201, b"i2"), 106, 80),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.reply(), [0x04, 102, 0, 0, 0, 0, 0, b'r', b'3']);
    }

    /// A clock whose `now + interval` passes its last value: every resend timer
    /// still runs and fires (a deadline that saturated to `u64::MAX` once meant
    /// "no timer", and the reply was never resent).
    #[test]
    fn a_clock_at_its_end_still_resends() {
        let end = u64::MAX;
        let mut r = Rig::new(Role::Slave);
        // A timer started by a send.
        assert_eq!(
            r.recv(&up(0x01, 100, b"go"), 100, end - 500),
            HandlerOutcome::Pass
        );
        assert_eq!(
            r.send(b"r1", PacketStatus::Intermediate, end - 500),
            HandlerOutcome::Pass
        );
        assert!(r.s.next_timeout_ms(end - 500).is_some_and(|t| t <= 500));
        assert_eq!(r.timeout(end - 501), Ok(HandlerOutcome::IgnorePacket));
        // It fires, and the timer restarted by the resend runs too.
        assert_eq!(r.timeout(end), Ok(HandlerOutcome::ReplyDown));
        assert_eq!(r.reply(), [0x00, 100, 0, 0, 0, 0, 0, b'r', b'1']);
        assert_eq!(r.s.next_timeout_ms(end), Some(0));
        assert_eq!(r.timeout(end), Ok(HandlerOutcome::ReplyDown));
        // A timer restarted by answering a repeat.
        assert_eq!(
            r.recv(&up(0x00, 201, b"i2"), 102, end - 100),
            HandlerOutcome::Pass
        );
        assert_eq!(
            r.send(b"r3", PacketStatus::Intermediate, end - 100),
            HandlerOutcome::Pass
        );
        assert_eq!(
            r.recv(&up(0x00, 201, b"i2"), 103, end - 50),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.s.state(), State::WaitRemote);
        assert!(r.s.next_timeout_ms(end - 50).is_some_and(|t| t <= 50));
        assert_eq!(r.timeout(end), Ok(HandlerOutcome::ReplyDown));
        assert_eq!(r.reply(), [0x00, 102, 0, 0, 0, 0, 0, b'r', b'3']);
    }

    #[test]
    fn slave_ignores_repeats_while_waiting_local() {
        let mut r = Rig::new(Role::Slave);
        r.recv(&up(0x01, 100, b"go"), 100, 0);
        assert_eq!(
            r.recv(&up(0x01, 100, b"go"), 101, 5),
            HandlerOutcome::IgnorePacket
        );
        assert_eq!(r.s.state(), State::WaitLocal);
        r.send(b"r1", PacketStatus::Intermediate, 10); // pid 201
        r.recv(&up(0x00, 201, b"i2"), 102, 20);
        assert_eq!(r.s.state(), State::WaitLocal);
        assert_eq!(
            r.recv(&up(0x00, 201, b"i2"), 103, 30),
            HandlerOutcome::IgnorePacket
        );
        assert_eq!(r.s.state(), State::WaitLocal);
    }

    #[test]
    fn slave_restarts_on_new_master_chain() {
        for waiting_local in [false, true] {
            let mut r = Rig::new(Role::Slave);
            r.in_wait_remote();
            if waiting_local {
                r.recv(&up(0x00, 201, b"i2"), 102, 0);
                assert_eq!(r.s.state(), State::WaitLocal);
            }
            assert_eq!(
                r.recv(&up(0x01, 300, b"new"), 300, 10),
                HandlerOutcome::Pass
            );
            assert_eq!(r.reply(), b"new");
            assert_eq!(r.s.received_status(), Some(PacketStatus::First));
            assert_eq!(r.s.state(), State::WaitLocal);
            assert_eq!(r.s.last_received_chain_id(), Some(pid(300)));
            assert_eq!(r.s.next_timeout_ms(10), None);
            // The old chain is gone: its packets are now inconsistent.
            assert_eq!(
                r.send(b"x", PacketStatus::Terminating, 20),
                HandlerOutcome::Pass
            );
            assert_eq!(r.reply()[..7], [0x02, 44, 1, 0, 0, 0, 0]);
        }
    }

    #[test]
    fn slave_reinitialises_on_inconsistency() {
        // Each case: a packet arriving in WaitRemote after `in_wait_remote` (sent pid 201).
        let cases: [(&str, Vec<u8>); 5] = [
            ("intermediate above LSPIDR", up(0x00, 999, b"x")),
            ("intermediate below both ranges", up(0x00, 5, b"x")),
            ("terminating below LSPIDR", up(0x02, 100, b"x")),
            ("terminating above LSPIDR", up(0x02, 202, b"x")),
            ("error message", up(0x03, 201, b"")),
        ];
        for (what, pkt) in cases {
            let mut r = Rig::new(Role::Slave);
            r.in_wait_remote();
            assert_eq!(
                r.recv(&pkt, 150, 0),
                HandlerOutcome::FatalErrorReinit,
                "{what}"
            );
            // The Error Message names the offending packet.
            assert_eq!(r.reply(), [0x03, 150, 0, 0, 0, 0, 0], "{what}");
            assert_eq!(r.s.state(), State::NotInitialized, "{what}");
            assert_eq!(r.s.next_timeout_ms(0), None);
            r.heap.heap().set_request(r.h, &up(0x01, 1, b"")).unwrap();
            assert_eq!(
                r.s.receive(&mut r.heap.heap(), r.h, pid(151), 0, &mut r.ids),
                Err(Error::InvalidState)
            );
            // Re-initialisation reuses the LSP handle and accepts a new chain.
            let before = r.heap.handles_in_use();
            r.s.init(&mut r.heap.heap()).unwrap();
            assert_eq!(r.heap.handles_in_use(), before);
            assert_eq!(r.s.state(), State::Idle);
            assert_eq!(r.recv(&up(0x01, 400, b"go"), 400, 1), HandlerOutcome::Pass);
        }
    }

    #[test]
    fn slave_inconsistencies_in_idle_and_wait_local() {
        // Idle, nothing sent yet: non-first packets have nothing to refer to.
        for pkt in [up(0x00, 1, b""), up(0x02, 1, b"")] {
            let mut r = Rig::new(Role::Slave);
            assert_eq!(r.recv(&pkt, 10, 0), HandlerOutcome::FatalErrorReinit);
        }
        // Idle after a terminating reply (pid 201): an intermediate answering it is
        // impossible; a terminating below it too.
        for pkt in [up(0x00, 201, b""), up(0x02, 100, b""), up(0x02, 500, b"")] {
            let mut r = Rig::new(Role::Slave);
            r.recv(&up(0x01, 100, b"go"), 100, 0);
            r.send(b"ok", PacketStatus::Terminating, 0);
            assert_eq!(r.recv(&pkt, 110, 0), HandlerOutcome::FatalErrorReinit);
        }
        // WaitLocal: a terminating packet, or an intermediate not repeating the last.
        for pkt in [up(0x02, 201, b""), up(0x00, 7, b"")] {
            let mut r = Rig::new(Role::Slave);
            r.in_wait_remote();
            r.recv(&up(0x00, 201, b"i2"), 102, 0);
            assert_eq!(r.recv(&pkt, 110, 0), HandlerOutcome::FatalErrorReinit);
        }
    }

    #[test]
    fn slave_send_out_of_state_is_fatal() {
        let mut r = Rig::new(Role::Slave);
        assert_eq!(
            r.send(b"x", PacketStatus::Intermediate, 0),
            HandlerOutcome::FatalErrorReinit
        );
        assert_eq!(r.reply(), [0x03, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.s.state(), State::NotInitialized);
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote();
        assert_eq!(
            r.send(b"x", PacketStatus::First, 0),
            HandlerOutcome::FatalErrorReinit
        );
        assert_eq!(r.reply(), [0x03, 100, 0, 0, 0, 0, 0]);
        let mut r = Rig::new(Role::Slave);
        r.heap.heap().set_request(r.h, b"x").unwrap();
        assert_eq!(
            r.s.send(
                &mut r.heap.heap(),
                r.h,
                PacketStatus::ErrorMessage,
                0,
                &mut r.ids
            ),
            Err(Error::InvalidState)
        );
        assert_eq!(r.s.state(), State::Idle);
    }

    #[test]
    fn slave_starts_its_own_chain() {
        let mut r = Rig::new(Role::Slave);
        assert_eq!(r.send(b"evt", PacketStatus::First, 0), HandlerOutcome::Pass);
        // A first packet carries its own packet ID as the Chain ID.
        assert_eq!(r.reply(), [0x01, 201, 0, 0, 0, 0, 0, b'e', b'v', b't']);
        assert_eq!(r.s.state(), State::WaitRemote);
        assert_eq!(r.recv(&up(0x02, 201, b"ack"), 50, 10), HandlerOutcome::Pass);
        assert_eq!(r.s.received_status(), Some(PacketStatus::Terminating));
        assert_eq!(r.s.state(), State::Idle);
    }

    #[test]
    fn request_resend_from_below() {
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote();
        r.heap.heap().set_request(r.h, &[]).unwrap();
        assert_eq!(
            r.s.request_resend(&mut r.heap.heap(), r.h, 300, &mut r.ids),
            Ok(HandlerOutcome::ReplyDown)
        );
        assert_eq!(r.reply(), [0x00, 100, 0, 0, 0, 0, 0, b'r', b'1']);
        assert_eq!(r.s.next_timeout_ms(300), Some(1000));
        let mut r = Rig::new(Role::Slave);
        assert_eq!(
            r.s.request_resend(&mut r.heap.heap(), r.h, 0, &mut r.ids),
            Ok(HandlerOutcome::FatalErrorReinit)
        );
        let mut r = Rig::new(Role::Master);
        assert_eq!(
            r.s.request_resend(&mut r.heap.heap(), r.h, 0, &mut r.ids),
            Err(Error::InvalidState)
        );
        assert_eq!(r.s.state(), State::Idle);
    }

    #[test]
    fn malformed_packets_change_nothing() {
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote();
        for bad in [vec![0x10, 0, 0, 0, 0, 0, 0], vec![0x00, 201, 0], vec![]] {
            r.heap.heap().set_request(r.h, &bad).unwrap();
            let e =
                r.s.receive(&mut r.heap.heap(), r.h, pid(150), 0, &mut r.ids);
            assert!(matches!(e, Err(Error::Malformed | Error::UnexpectedEnd)));
            assert_eq!(r.s.state(), State::WaitRemote);
        }
        assert_eq!(r.recv(&up(0x00, 201, b"ok"), 151, 0), HandlerOutcome::Pass);
    }

    #[test]
    fn packet_ids_must_grow() {
        let mut r = Rig::new(Role::Slave);
        r.in_wait_remote();
        r.ids.0 = 100; // next id 101 < 201
        assert_eq!(r.timeout(5000), Err(Error::InvalidState));
        assert_eq!(r.s.state(), State::WaitRemote);
    }

    #[test]
    fn master_gives_up_after_max_resends() {
        let mut r = Rig::new(Role::Master);
        assert_eq!(r.send(b"cmd", PacketStatus::First, 0), HandlerOutcome::Pass);
        assert_eq!(r.reply(), [0x01, 201, 0, 0, 0, 0, 0, b'c', b'm', b'd']);
        let mut now = 0;
        for _ in 0..6 {
            now += r.s.next_timeout_ms(now).unwrap();
            assert_eq!(r.timeout(now), Ok(HandlerOutcome::ReplyDown));
            assert_eq!(r.reply(), [0x01, 201, 0, 0, 0, 0, 0, b'c', b'm', b'd']);
        }
        // 500 + 1000 + 2000 + 4000 * 3 ms of backoff so far.
        assert_eq!(now, 15_500);
        now += r.s.next_timeout_ms(now).unwrap();
        assert_eq!(r.timeout(now), Err(Error::Timeout));
        assert_eq!(r.s.state(), State::Idle);
        assert_eq!(r.s.next_timeout_ms(now), None);
    }

    #[test]
    fn master_ignores_unexpected_packets() {
        let mut r = Rig::new(Role::Master);
        r.send(b"cmd", PacketStatus::First, 0); // chain 201
        for pkt in [
            up(0x01, 77, b"dev"), // a device chain while ours runs
            up(0x00, 999, b"x"),  // broken chain
            up(0x02, 5, b"x"),    // below
            up(0x00, 5, b"x"),    // below both
        ] {
            assert_eq!(r.recv(&pkt, 60, 0), HandlerOutcome::IgnorePacket);
            assert_eq!(r.s.state(), State::WaitRemote);
        }
        assert_eq!(r.recv(&up(0x02, 201, b"res"), 61, 1), HandlerOutcome::Pass);
        assert_eq!(r.reply(), b"res");
        assert_eq!(r.s.state(), State::Idle);
        // In idle, a device-initiated chain is accepted.
        assert_eq!(r.recv(&up(0x01, 70, b"evt"), 70, 2), HandlerOutcome::Pass);
        assert_eq!(r.s.state(), State::WaitLocal);
        // Sending first while waiting local: reported, back to idle.
        r.heap.heap().set_request(r.h, b"x").unwrap();
        assert_eq!(
            r.s.send(&mut r.heap.heap(), r.h, PacketStatus::First, 3, &mut r.ids),
            Err(Error::InvalidState)
        );
        assert_eq!(r.s.state(), State::Idle);
    }

    #[test]
    fn master_reports_error_message() {
        let mut r = Rig::new(Role::Master);
        r.send(b"cmd", PacketStatus::First, 0);
        assert_eq!(r.recv(&up(0x03, 60, b""), 62, 1), HandlerOutcome::Pass);
        assert_eq!(r.s.received_status(), Some(PacketStatus::ErrorMessage));
        assert_eq!(r.s.state(), State::Idle);
        assert_eq!(r.s.next_timeout_ms(1), None);
    }

    /// One side of the simulated link: its SAGDP, heap and packet ids.
    struct Side {
        r: Rig,
        got: Vec<(PacketStatus, Vec<u8>)>,
    }

    /// Runs master chain `cmd`(first) -> `r1`(intermediate) -> `ack`(terminating)
    /// over a link that drops the transmissions whose index bit is set in `mask`.
    /// Returns (master received, slave received, master gave up).
    #[allow(clippy::type_complexity)]
    fn simulate(
        mask: u32,
    ) -> (
        Vec<(PacketStatus, Vec<u8>)>,
        Vec<(PacketStatus, Vec<u8>)>,
        bool,
    ) {
        let mut m = Side {
            r: Rig::new(Role::Master),
            got: vec![],
        };
        let mut s = Side {
            r: Rig::new(Role::Slave),
            got: vec![],
        };
        s.r.ids.0 = 1_000_000;
        // (to_slave, bytes, pid)
        let mut wire: Vec<(bool, Vec<u8>, PacketId)> = vec![];
        let mut sent = 0u32;
        let mut transmit =
            |wire: &mut Vec<(bool, Vec<u8>, PacketId)>, to_slave: bool, side: &Side| {
                let drop = sent < 32 && mask & (1 << sent) != 0;
                sent += 1;
                if !drop {
                    wire.push((to_slave, side.r.reply(), side.r.s.last_sent_pid().unwrap()));
                }
            };
        assert_eq!(
            m.r.send(b"cmd", PacketStatus::First, 0),
            HandlerOutcome::Pass
        );
        transmit(&mut wire, true, &m);
        let mut gave_up = false;
        let mut now = 0u64;
        while now < 120_000 {
            while !wire.is_empty() {
                let (to_slave, bytes, p) = wire.remove(0);
                let side = if to_slave { &mut s } else { &mut m };
                match side.r.recv(&bytes, p.value(), now) {
                    HandlerOutcome::Pass => {
                        let st = side.r.s.received_status().unwrap();
                        side.got.push((st, side.r.reply()));
                        let answer = match (to_slave, st) {
                            (true, PacketStatus::First) => {
                                Some((&b"r1"[..], PacketStatus::Intermediate))
                            }
                            (false, PacketStatus::Intermediate) => {
                                Some((&b"ack"[..], PacketStatus::Terminating))
                            }
                            _ => None,
                        };
                        if let Some((payload, st)) = answer {
                            assert_eq!(side.r.send(payload, st, now), HandlerOutcome::Pass);
                            transmit(&mut wire, !to_slave, side);
                        }
                    }
                    HandlerOutcome::ReplyDown => transmit(&mut wire, !to_slave, side),
                    HandlerOutcome::IgnorePacket => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            for to_slave in [false, true] {
                let side = if to_slave { &mut m } else { &mut s };
                match side.r.timeout(now) {
                    Ok(HandlerOutcome::ReplyDown) => transmit(&mut wire, to_slave, side),
                    Ok(_) => {}
                    Err(Error::Timeout) => gave_up = true,
                    Err(e) => panic!("{e:?}"),
                }
            }
            now += 100;
        }
        (m.got, s.got, gave_up)
    }

    #[test]
    fn lossy_link_delivers_each_packet_exactly_once() {
        let mut completed = 0;
        for mask in 0..1024u32 {
            let (mgot, sgot, gave_up) = simulate(mask);
            let cmd = (PacketStatus::First, b"cmd".to_vec());
            let r1 = (PacketStatus::Intermediate, b"r1".to_vec());
            let ack = (PacketStatus::Terminating, b"ack".to_vec());
            assert!(
                mgot.len() <= 1 && sgot.len() <= 2,
                "mask {mask:#b}: duplicates"
            );
            if gave_up {
                assert!(mgot.is_empty(), "mask {mask:#b}");
                assert!(sgot.len() <= 1, "mask {mask:#b}");
            } else {
                assert_eq!(mgot, vec![r1.clone()], "mask {mask:#b}");
                assert_eq!(sgot, vec![cmd.clone(), ack.clone()], "mask {mask:#b}");
                completed += 1;
            }
        }
        // Only masks dropping every copy of the first packet make the master give up.
        assert!(completed > 1000, "{completed}");
    }

    proptest! {
        #[test]
        fn header_round_trips(flags in 0u8..8, id in 0u64..=PacketId::MAX) {
            let bytes = up(flags, id, &[]);
            let h = Header::parse(&bytes).unwrap();
            prop_assert_eq!(h.to_bytes().to_vec(), bytes);
            prop_assert_eq!(h.id_field.value(), id);
            prop_assert_eq!(PacketId::from_bytes(h.id_field.to_bytes()), h.id_field);
        }

        /// Re-initialising (and failing) leaves an instance as a new one, but for its
        /// LSP handle.
        #[test]
        fn init_forgets_everything_but_the_lsp(
            pkts in proptest::collection::vec((0u8..0x08, 0u64..300, proptest::collection::vec(any::<u8>(), 0..8)), 1..20),
            role_master in any::<bool>(),
        ) {
            let role = if role_master { Role::Master } else { Role::Slave };
            let mut r = Rig::new(role);
            let mut next_pid = 10u64;
            for (i, (flags, id, payload)) in pkts.into_iter().enumerate() {
                next_pid += 1;
                r.heap.heap().set_request(r.h, &up(flags, id, &payload)).unwrap();
                let _ = r.s.receive(&mut r.heap.heap(), r.h, pid(next_pid), i as u64, &mut r.ids);
                if r.s.state() == State::WaitLocal {
                    let _ = r.send(b"a", PacketStatus::Intermediate, i as u64);
                }
            }
            r.s.init(&mut r.heap.heap()).unwrap();
            let mut fresh = Sagdp::new(role, if role_master { Config::MASTER } else { Config::SLAVE });
            fresh.lsp = r.s.lsp;
            fresh.state = State::Idle;
            prop_assert_eq!(format!("{:?}", r.s), format!("{:?}", fresh));
        }

        /// The device's type ([`DeviceOnly`], whose code has no master paths) does
        /// what a slave chosen at run time does: the same outcomes, replies, states,
        /// packet IDs and timers for any sequence of packets, sends and timer events.
        #[test]
        fn device_only_acts_as_a_runtime_slave(
            steps in proptest::collection::vec((0u8..0x20, 0u64..300, proptest::collection::vec(any::<u8>(), 0..8)), 1..40),
        ) {
            let mut dm = H::new();
            let mut em = H::new();
            let mut d = Sagdp::slave();
            let mut e = Sagdp::new(Role::Slave, Config::SLAVE);
            d.init(&mut dm.heap()).unwrap();
            e.init(&mut em.heap()).unwrap();
            let dh = dm.heap().alloc().unwrap();
            let eh = em.heap().alloc().unwrap();
            let (mut di, mut ei) = (Ids(200), Ids(200));
            let mut next_pid = 10u64;
            for (i, (op, id, payload)) in steps.into_iter().enumerate() {
                let now = i as u64 * 700;
                next_pid += 1;
                let st = PacketStatus::from_flags(op);
                let (od, oe) = match op >> 3 {
                    0 | 1 => {
                        let pkt = up(op & 0x0F, id, &payload);
                        dm.heap().set_request(dh, &pkt).unwrap();
                        em.heap().set_request(eh, &pkt).unwrap();
                        (
                            d.receive(&mut dm.heap(), dh, pid(next_pid), now, &mut di),
                            e.receive(&mut em.heap(), eh, pid(next_pid), now, &mut ei),
                        )
                    }
                    2 => {
                        dm.heap().set_request(dh, &payload).unwrap();
                        em.heap().set_request(eh, &payload).unwrap();
                        (
                            d.send(&mut dm.heap(), dh, st, now, &mut di),
                            e.send(&mut em.heap(), eh, st, now, &mut ei),
                        )
                    }
                    _ => (
                        d.on_timeout(&mut dm.heap(), dh, now, &mut di),
                        e.on_timeout(&mut em.heap(), eh, now, &mut ei),
                    ),
                };
                prop_assert_eq!(od, oe);
                let dr = dm.heap().reply(dh).unwrap().to_vec();
                let er = em.heap().reply(eh).unwrap().to_vec();
                prop_assert_eq!(dr, er);
                prop_assert_eq!(d.state(), e.state());
                prop_assert_eq!(d.role(), e.role());
                prop_assert_eq!(d.last_sent_pid(), e.last_sent_pid());
                prop_assert_eq!(d.received_status(), e.received_status());
                prop_assert_eq!(d.next_timeout_ms(now), e.next_timeout_ms(now));
                if d.state() == State::NotInitialized {
                    d.init(&mut dm.heap()).unwrap();
                    e.init(&mut em.heap()).unwrap();
                }
            }
        }

        /// PSPIDR lies below LSPIDR after every event, whatever the packet-ID source
        /// returns (growing, repeating, going back, failing) and whatever arrives, so
        /// `relate` may class an ID within PSPIDR as the previous packet's without
        /// comparing it with LSPIDR.
        #[test]
        fn previous_range_stays_below_last_range(
            events in proptest::collection::vec((0u8..6, 0u64..6, 0u8..8, 0u64..4), 1..60),
            role_master in any::<bool>(),
        ) {
            let mut r = Rig::new(if role_master { Role::Master } else { Role::Slave });
            let mut now = 0u64;
            let mut rx = 1000u64;
            for (kind, step, flags, pick) in events {
                // The source's next ID: back by up to two, the same, or ahead; or a
                // failure.
                let fails = step == 5;
                r.ids.0 = (r.ids.0 + step).saturating_sub(3);
                let mut src = WildIds { next: r.ids.0 + 1, fails };
                now += 700;
                let h = r.h;
                let mut heap = r.heap.heap();
                let _ = match kind {
                    0 | 1 => {
                        // A packet naming one of the ranges' ends (or just past one).
                        let ends = [r.s.lspidr.map(|l| l.lo), r.s.lspidr.map(|l| l.hi), r.s.pspidr.map(|p| p.hi), r.s.lrcid];
                        let id = ends[pick as usize].map_or(7, |p| p.value()) + u64::from(flags >> 2 & 1);
                        rx += 1;
                        heap.set_request(h, &up(flags & 3 | (flags & 4), id, b"x")).unwrap();
                        r.s.receive(&mut heap, h, pid(rx), now, &mut src)
                    }
                    2 => {
                        heap.set_request(h, b"s").unwrap();
                        let st = [PacketStatus::First, PacketStatus::Intermediate, PacketStatus::Terminating][pick as usize % 3];
                        r.s.send(&mut heap, h, st, now, &mut src)
                    }
                    3 => r.s.on_timeout(&mut heap, h, now, &mut src),
                    4 => r.s.request_resend(&mut heap, h, now, &mut src),
                    _ => r.s.init(&mut heap).map(|_| HandlerOutcome::IgnorePacket),
                };
                if r.s.state() == State::NotInitialized {
                    r.s.init(&mut r.heap.heap()).unwrap();
                }
                match (r.s.lspidr, r.s.pspidr) {
                    (Some(l), Some(p)) => prop_assert!(p.hi < l.lo, "{:?} {:?}", p, l),
                    (None, Some(p)) => prop_assert!(false, "PSPIDR {:?} without LSPIDR", p),
                    _ => {}
                }
            }
        }

        /// Arbitrary packet sequences never panic, keep the state machine coherent and
        /// answer every inconsistency with an Error Message.
        #[test]
        fn arbitrary_packets_are_handled(
            pkts in proptest::collection::vec((0u8..0x10, 0u64..300, proptest::collection::vec(any::<u8>(), 0..8)), 1..30),
            role_master in any::<bool>(),
        ) {
            let mut r = Rig::new(if role_master { Role::Master } else { Role::Slave });
            let mut next_pid = 10u64;
            for (i, (flags, id, payload)) in pkts.into_iter().enumerate() {
                next_pid += 1;
                r.heap.heap().set_request(r.h, &up(flags, id, &payload)).unwrap();
                let out = r.s.receive(&mut r.heap.heap(), r.h, pid(next_pid), i as u64, &mut r.ids);
                match out {
                    Err(Error::Malformed) => prop_assert!(flags & 0xF8 != 0),
                    Err(Error::InvalidState) => prop_assert_eq!(r.s.state(), State::NotInitialized),
                    Err(e) => prop_assert!(false, "{:?}", e),
                    Ok(HandlerOutcome::Pass) => {
                        prop_assert_eq!(r.reply(), payload);
                        if !role_master && r.s.state() == State::WaitLocal {
                            // Let the higher layer answer so the chain moves on.
                            prop_assert_eq!(r.send(b"a", PacketStatus::Intermediate, i as u64), HandlerOutcome::Pass);
                        }
                    }
                    Ok(HandlerOutcome::FatalErrorReinit) => {
                        prop_assert!(!role_master);
                        prop_assert_eq!(r.reply()[0], 0x03);
                        prop_assert_eq!(r.s.state(), State::NotInitialized);
                        r.s.init(&mut r.heap.heap()).unwrap();
                    }
                    Ok(HandlerOutcome::ReplyDown) => {
                        prop_assert_eq!(r.reply()[0] & FLAG_REQUESTED_RESEND, FLAG_REQUESTED_RESEND);
                    }
                    Ok(_) => {}
                }
            }
            prop_assert!(r.heap.handles_in_use() == 2);
        }
    }
}
