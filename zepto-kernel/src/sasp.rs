//! SASP, the SmartAnthill Security Protocol (`SimpleIoT/sp.rst`, formerly
//! `protocols/sasp.rst`): EAX authenticated encryption with per-packet nonces,
//! replay protection (NLW/NFS), "old nonce" resynchronisation and padding.
//!
//! # Packet
//!
//! `| header (6) | tag (16) | encrypted data (16*k, k >= 1) |`
//!
//! * header: nonce varying part (VP, 47 bits, little-endian in bytes 0..6, bits
//!   0..46) and the destination flag (bit 7 of byte 5: 0 = for the higher protocol,
//!   1 = for SASP itself);
//! * EAX nonce (16 bytes, the block size): the 6 header
//!   bytes, then one byte holding the *sender's* peer-distinguishing flag (0 for the
//!   device, 1 for the client), then 9 zero bytes. Both directions share one key, and
//!   this byte keeps their nonces apart;
//! * no associated data (the header is authenticated through the nonce).
//!
//! Data under encryption: `| first byte | (opt) complementary size | bytes | (opt)
//! padding |` where bit 7 of the first byte flags padding and its low 7 bits belong
//! to the payload. The payload handed to and from the higher protocol is
//! `[first byte & 0x7f, bytes...]`: it must not be empty and its first byte must be
//! below 0x80.
//!
//! # Handlers
//!
//! [`Sasp::receive`] reads an SASP packet as the request and writes the payload as
//! the reply ([`HandlerOutcome::Pass`]), or writes an "old nonce" error packet
//! ([`HandlerOutcome::ReplyDown`]: send it to the bus as-is), or drops the packet
//! ([`HandlerOutcome::IgnorePacket`], counted in [`SaspStats`]).
//! [`Sasp::send`] reads a payload as the request and writes the SASP packet as the
//! reply ([`HandlerOutcome::Pass`]).

use crate::cipher::{BlockCipher128, KeyInit128};
use crate::eax::{Eax, EaxKey};
use crate::encoding;
use crate::error::{Error, HandlerOutcome};
use crate::hal::{Random, Storage};
use crate::heap::{Handle, Heap};
use crate::nonce_store::{NonceStore, MAX_NONCE};
use core::num::NonZeroU64;

/// Header bytes (nonce VP and destination flag).
pub const HEADER_LEN: usize = 6;
/// EAX tag bytes.
pub const TAG_LEN: usize = 16;
/// Cipher block size: data under encryption is padded to a multiple of it.
pub const BLOCK_LEN: usize = 16;
/// Bytes SASP adds in front of the encrypted data.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Smallest SASP packet (one block of encrypted data).
pub const MIN_PACKET_LEN: usize = OVERHEAD + BLOCK_LEN;
/// SASP-internal message type of the "old nonce" error message.
pub const MSG_OLD_NONCE: u8 = 0x01;
/// Payload length of the "old nonce" error message (type byte + 6-byte nonce).
pub const OLD_NONCE_MSG_LEN: usize = 7;
/// After answering an authentic packet with an old nonce, the device and the
/// client answer old nonces at or below it again only this many milliseconds later
/// (higher ones at once; see [`Sasp::open_old_nonce_window`]): replays cost at most
/// 4 nonces a second, not one per packet.
pub const OLD_NONCE_ANSWER_GAP_MS: u64 = 250;

/// A 128-bit block cipher with a 128-bit key that SASP can run EAX over.
pub trait SaspCipher: BlockCipher128 + KeyInit128 + Clone {}

impl<T: BlockCipher128 + KeyInit128 + Clone> SaspCipher for T {}

/// The cipher of the build: AES-128, or Speck-128/128 with the `speck` feature.
#[cfg(not(feature = "speck"))]
pub type DefaultCipher = aes::Aes128;
/// The cipher of the build: AES-128, or Speck-128/128 with the `speck` feature.
#[cfg(feature = "speck")]
pub type DefaultCipher = speck_cipher::Speck128_128;

/// The name of [`DefaultCipher`], for messages: both ends of a link must use the
/// same cipher, and a packet under another one fails authentication like one under
/// another key.
#[cfg(not(feature = "speck"))]
pub const DEFAULT_CIPHER_NAME: &str = "AES-128";
/// The name of [`DefaultCipher`], for messages: both ends of a link must use the
/// same cipher, and a packet under another one fails authentication like one under
/// another key.
#[cfg(feature = "speck")]
pub const DEFAULT_CIPHER_NAME: &str = "Speck-128/128";

/// Which end of the link this SASP instance is: decides its peer-distinguishing
/// flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The SmartAnthill Device (slave): peer-distinguishing flag 0.
    Device,
    /// The SmartAnthill Client (master): peer-distinguishing flag 1.
    Client,
}

impl Role {
    /// This side's peer-distinguishing flag.
    pub const fn peer_flag(self) -> u8 {
        match self {
            Role::Device => 0,
            Role::Client => 1,
        }
    }

    /// The other side's peer-distinguishing flag.
    pub const fn other_flag(self) -> u8 {
        1 - self.peer_flag()
    }
}

/// Counters of what [`Sasp::receive`] dropped or handled specially.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaspStats {
    /// Packets whose tag did not verify.
    pub auth_failures: u32,
    /// Packets too short, or authentic but with a malformed inner layout.
    pub malformed: u32,
    /// Authentic packets with an old nonce, answered with an "old nonce" message.
    pub old_nonce_replies: u32,
    /// Authentic packets with an old nonce left unanswered (replays, see
    /// [`Sasp::open_old_nonce_window`]).
    pub old_nonce_unanswered: u32,
    /// "Old nonce" messages received.
    pub old_nonce_received: u32,
    /// "Old nonce" messages that raised NFS.
    pub resyncs: u32,
}

impl SaspStats {
    /// All counters zero.
    pub const ZERO: SaspStats = SaspStats {
        auth_failures: 0,
        malformed: 0,
        old_nonce_replies: 0,
        old_nonce_unanswered: 0,
        old_nonce_received: 0,
        resyncs: 0,
    };
}

/// The 6-byte header for nonce `vp` and destination flag `to_sasp`.
pub fn header(vp: u64, to_sasp: bool) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    encoding::write_uint_le(vp & MAX_NONCE, &mut h);
    if to_sasp {
        if let Some(b5) = h.get_mut(5) {
            *b5 |= 0x80;
        }
    }
    h
}

/// Splits a header into (nonce VP, destination flag).
pub fn parse_header(h: &[u8; HEADER_LEN]) -> (u64, bool) {
    let [b0, b1, b2, b3, b4, b5] = *h;
    let raw = u64::from(u32::from_le_bytes([b0, b1, b2, b3]))
        | u64::from(u16::from_le_bytes([b4, b5])) << 32;
    (raw & MAX_NONCE, raw >> 47 != 0)
}

/// Packet ID of a packet (`sp.rst` 1.4): VP with the sender's peer-distinguishing
/// flag in bit 7 of byte 5. SAGDP uses it as PID/PPID.
pub fn packet_id(vp: u64, peer_flag: u8) -> [u8; 6] {
    header(vp, peer_flag != 0)
}

/// The 16-byte EAX nonce of a packet: header, sender's peer flag, zeros.
pub fn eax_nonce(header: &[u8; HEADER_LEN], sender_flag: u8) -> [u8; 16] {
    let mut n = [0u8; 16];
    if let Some(dst) = n.get_mut(..HEADER_LEN) {
        dst.copy_from_slice(header);
    }
    if let Some(b) = n.get_mut(HEADER_LEN) {
        *b = sender_flag & 1;
    }
    n
}

/// EAX encryption in place with a key expanded once ([`Eax`]; [`Sasp`] itself
/// keeps an [`EaxKey`]): returns the 16-byte tag.
pub fn eax_seal<C: SaspCipher>(
    aead: &Eax<C>,
    nonce: &[u8; 16],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    Ok(aead.seal(nonce, aad, buf))
}

/// EAX decryption in place: verifies `tag` first; on failure `buf` is unchanged and
/// the result is [`Error::AuthenticationFailed`].
pub fn eax_open<C: SaspCipher>(
    aead: &Eax<C>,
    nonce: &[u8; 16],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), Error> {
    aead.open(nonce, aad, buf, tag)
}

/// Size of the data under encryption for a payload of `len` bytes (first byte
/// included) without enforced padding: `len` if it is a whole number of blocks,
/// else the next multiple of 16 that leaves room for the size field.
pub const fn due_len(len: usize) -> usize {
    if len.is_multiple_of(BLOCK_LEN) && len > 0 {
        len
    } else {
        (len + 1).div_ceil(BLOCK_LEN) * BLOCK_LEN
    }
}

/// Size of the SASP packet carrying a payload of `len` bytes.
pub const fn packet_len(len: usize) -> usize {
    OVERHEAD + due_len(len)
}

/// Zero bytes in flash, for room and padding taken in the heap (no zeroed buffer on
/// the stack of the send path).
static ZEROS: [u8; OVERHEAD + encoding::MAX_ENCODED_LEN] =
    [0; OVERHEAD + encoding::MAX_ENCODED_LEN];

/// Size of the "old nonce" message's packet: its payload (type byte and 6-byte
/// value) padded to one block.
const OLD_NONCE_PACKET_LEN: usize = packet_len(OLD_NONCE_MSG_LEN);
/// The first two bytes of the "old nonce" message's data under encryption: the type
/// with the padding flag, and the size field of its padding (one byte).
const OLD_NONCE_HEAD: [u8; 2] = [
    MSG_OLD_NONCE | 0x80,
    (due_len(OLD_NONCE_MSG_LEN) - OLD_NONCE_MSG_LEN) as u8,
];
/// Bytes of that data before its random padding: the two above and the value.
const OLD_NONCE_FIXED_LEN: usize = OLD_NONCE_HEAD.len() + OLD_NONCE_MSG_LEN - 1;

/// Appends `n` zero bytes to the reply of `h`.
fn append_zeros(heap: &mut Heap<'_>, h: Handle, mut n: usize) -> Result<(), Error> {
    while n > 0 {
        let k = n.min(ZEROS.len());
        heap.append_reply(h, ZEROS.get(..k).ok_or(Error::BufferTooSmall)?)?;
        n -= k;
    }
    Ok(())
}

/// One end of an SASP link: key, role, nonces and counters.
#[derive(Debug)]
pub struct Sasp<C: SaspCipher = DefaultCipher> {
    /// The key (none before [`crate::pump::Device::start`] for a device built in place).
    aead: Option<EaxKey<C>>,
    role: Role,
    nonces: NonceStore,
    stats: SaspStats,
    /// Nonces of the last packet passed up and of the last sent (never 0: a
    /// nonce is above NLW or NFS, which start at 0 or above; 8 bytes each).
    last_received: Option<NonZeroU64>,
    last_sent: Option<NonZeroU64>,
    refused: bool,
    /// Highest old nonce answered so far (0: none; no sender uses nonce 0).
    old_answered: u64,
    /// Whether an old nonce at or below `old_answered` may be answered now.
    old_window: bool,
}

impl<C: SaspCipher> Sasp<C> {
    /// An SASP end with a 128-bit `key`, its `role` and its opened nonce store.
    pub fn new(key: &[u8; 16], role: Role, nonces: NonceStore) -> Result<Self, Error> {
        let aead = EaxKey::<C>::new(key);
        Ok(Self {
            aead: Some(aead),
            role,
            nonces,
            stats: SaspStats::default(),
            last_received: None,
            last_sent: None,
            refused: false,
            old_answered: 0,
            old_window: true,
        })
    }

    /// An end with no key and a nonce store not opened: it sends nothing and
    /// accepts nothing until the device is started ([`crate::pump::Device::start`]).
    pub(crate) const fn unkeyed(role: Role) -> Self {
        Self {
            aead: None,
            role,
            nonces: NonceStore::unopened(),
            stats: SaspStats::ZERO,
            last_received: None,
            last_sent: None,
            refused: false,
            old_answered: 0,
            old_window: true,
        }
    }

    /// Takes `key` (kept with EAX's `B`; each seal and open expands it) and closes
    /// the nonce store, which belonged to the key before: until it is opened for
    /// this key ([`Sasp::open_nonces`]) no nonce is sent or accepted.
    pub(crate) fn set_key(&mut self, key: &[u8; 16]) {
        self.nonces.close();
        self.aead = Some(EaxKey::new(key));
    }

    /// Opens the nonce store for the key (its id comes from the expanded key): what
    /// [`NonceStore::open`] does, in place.
    #[inline(never)]
    pub(crate) fn open_nonces<H: Storage + Random + ?Sized>(
        &mut self,
        hal: &mut H,
        base: usize,
        reserve: u32,
        blank: crate::nonce_store::BlankStart,
    ) -> Result<(), Error> {
        let kid = self.key_id()?;
        self.nonces = NonceStore::open(hal, base, reserve, kid, blank)?;
        Ok(())
    }

    /// The key's id for the nonce records (the cipher expanded in this function's
    /// frame only, not under the nonce store's storage calls).
    #[inline(never)]
    fn key_id(&self) -> Result<crate::nonce_store::KeyId, Error> {
        Ok(crate::nonce_store::key_id_of(&self.aead()?.cipher()))
    }

    /// The key, or [`Error::InvalidState`] before there is one.
    fn aead(&self) -> Result<&EaxKey<C>, Error> {
        self.aead.as_ref().ok_or(Error::InvalidState)
    }

    /// This end's role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// Drop and resync counters.
    pub const fn stats(&self) -> &SaspStats {
        &self.stats
    }

    /// The nonce state (NFS, NLW, write count).
    pub const fn nonces(&self) -> &NonceStore {
        &self.nonces
    }

    /// Decides whether an authentic packet with an old nonce at or below the
    /// highest old nonce answered so far gets an "old nonce" message (`open`), or is
    /// dropped and counted in [`SaspStats::old_nonce_unanswered`]. A higher old
    /// nonce is always answered: it may be a peer that lost its state. Every answer
    /// costs a nonce (and, per `reserve` of them, a storage write), so a device
    /// closes the window for a while after each answer: a replayed packet then
    /// costs nothing. Open unless closed.
    pub fn open_old_nonce_window(&mut self, open: bool) {
        self.old_window = open;
    }

    /// Nonce VP of the last packet passed up by [`Sasp::receive`].
    pub const fn last_received_nonce(&self) -> Option<u64> {
        nonce_value(self.last_received)
    }

    /// Nonce VP of the last packet built by [`Sasp::send`] or as an "old nonce"
    /// message.
    pub const fn last_sent_nonce(&self) -> Option<u64> {
        nonce_value(self.last_sent)
    }

    /// True if the last [`Sasp::receive`] was an "old nonce" message that refused
    /// the last packet this end sent (its value is at or above that packet's nonce):
    /// the packet must go again under a new nonce.
    pub const fn last_sent_refused(&self) -> bool {
        self.refused
    }

    /// The nonce VP the next packet will get, unless an "old nonce" message arrives
    /// first (`sp.rst` 7.3, "request for nonce VP").
    pub const fn next_send_nonce(&self) -> u64 {
        self.nonces.peek_send()
    }

    /// [`Sasp::send_padded`] for a packet whose ID [`Sasp::next_packet_id`] already
    /// announced (to SAGDP): if the send fails, that nonce is used up anyway, so the
    /// same ID is never handed out twice and the IDs SAGDP sees keep growing.
    pub fn send_announced<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
        pad_to: Option<usize>,
    ) -> Result<HandlerOutcome, Error> {
        let announced = self.next_send_nonce();
        let r = self.send_padded(heap, h, hal, pad_to);
        if r.is_err() && self.next_send_nonce() == announced {
            let _ = self.nonces.next_send(hal);
        }
        r
    }

    /// Persists the exact nonce state (see [`NonceStore::checkpoint`]).
    pub fn checkpoint<S: Storage + ?Sized>(&mut self, storage: &mut S) -> Result<(), Error> {
        self.nonces.checkpoint(storage)
    }

    /// Packet ID (with this end's flag) that the next packet sent will carry, unless
    /// an "old nonce" message arrives first or another process sharing the nonce
    /// storage takes it: [`Sasp::reserve_packet_id`] makes it this end's own.
    pub fn next_packet_id(&self) -> [u8; 6] {
        packet_id(self.next_send_nonce(), self.role.peer_flag())
    }

    /// Reserves the nonce of the next packet sent (see
    /// [`NonceStore::reserve_next`]) and returns its packet ID: what SAGDP records
    /// for the packet it is about to pass down, so that the ID in the packet, the
    /// nonce it is sent under and the ID the peer's answer names are one.
    pub fn reserve_packet_id<S: Storage + ?Sized>(
        &mut self,
        storage: &mut S,
    ) -> Result<[u8; 6], Error> {
        let n = self.nonces.reserve_next(storage)?;
        Ok(packet_id(n, self.role.peer_flag()))
    }

    /// Packet ID of the last packet passed up (peer's flag in it).
    pub fn last_received_pid(&self) -> Option<[u8; 6]> {
        self.last_received_nonce()
            .map(|vp| packet_id(vp, self.role.other_flag()))
    }

    /// Handles a packet from the bus (request of `h`). See the module documentation
    /// for the outcomes. Errors are storage or heap failures; the packet must then
    /// be dropped (no nonce state changed). The reply is empty unless the outcome
    /// is [`HandlerOutcome::Pass`] or [`HandlerOutcome::ReplyDown`].
    #[inline(never)]
    pub fn receive<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
    ) -> Result<HandlerOutcome, Error> {
        heap.clear_reply(h)?;
        let r = self.receive_packet(heap, h, hal);
        if !matches!(r, Ok(HandlerOutcome::Pass | HandlerOutcome::ReplyDown)) {
            // Dropped: no plaintext is left behind.
            heap.clear_reply(h)?;
        }
        r
    }

    /// [`Sasp::receive`] after its reply was emptied; the reply needs emptying
    /// again unless the packet is passed up or answered.
    #[inline(always)]
    fn receive_packet<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
    ) -> Result<HandlerOutcome, Error> {
        self.refused = false;
        // Decrypted in place: the payload then becomes the reply without a copy.
        let (vp, to_sasp, payload) = {
            let req = heap.request_mut(h)?;
            // The header, the tag and at least one byte of data.
            let parts = req
                .split_first_chunk_mut::<HEADER_LEN>()
                .and_then(|(hdr, rest)| Some((hdr, rest.split_first_chunk_mut::<TAG_LEN>()?)))
                .filter(|(_, (_, data))| !data.is_empty());
            let Some((hdr, (tag, data))) = parts else {
                crate::count(&mut self.stats.malformed);
                return Ok(HandlerOutcome::IgnorePacket);
            };
            // The nonce starts with the header: the header's fields are read from it.
            let nonce = eax_nonce(hdr, self.role.other_flag());
            if self.aead()?.open(&nonce, &[], data, tag).is_err() {
                crate::count(&mut self.stats.auth_failures);
                return Ok(HandlerOutcome::IgnorePacket);
            }
            let (vp, to_sasp) = nonce.first_chunk().map_or((0, false), parse_header);
            (vp, to_sasp, unpad(data))
        };
        let Ok((at, n)) = payload else {
            crate::count(&mut self.stats.malformed);
            return Ok(HandlerOutcome::IgnorePacket);
        };
        heap.split_request(h, OVERHEAD + at)?;
        heap.truncate_reply(h, n)?;
        if to_sasp {
            return self.receive_sasp_message(heap, h);
        }
        match self.nonces.accept_received(hal, vp) {
            Ok(true) => {
                self.last_received = NonZeroU64::new(vp);
                return Ok(HandlerOutcome::Pass);
            }
            Ok(false) => {}
            // NLW could not be made durable: drop the packet, plaintext included.
            Err(e) => return Err(e),
        }
        // Authentic but old: tell the peer the lowest nonce it may use next, unless
        // this is an old nonce again (a replay, most likely) and the window is shut.
        if !self.old_window && vp <= self.old_answered {
            crate::count(&mut self.stats.old_nonce_unanswered);
            return Ok(HandlerOutcome::IgnorePacket);
        }
        heap.clear_reply(h)?;
        self.build_old_nonce(heap, h, hal)?;
        crate::count(&mut self.stats.old_nonce_replies);
        self.old_answered = self.old_answered.max(vp);
        Ok(HandlerOutcome::ReplyDown)
    }

    /// Builds the "old nonce" message (NLW as its value) in the reply of `h`, which
    /// must be empty: the packet [`Sasp::build`] makes of that payload, whose data
    /// under encryption is one block (`0x81`, size field 9, NLW in 6 bytes, 8
    /// random bytes).
    fn build_old_nonce<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
    ) -> Result<(), Error> {
        append_zeros(heap, h, OLD_NONCE_PACKET_LEN)?;
        let nlw = self.nonces.nlw();
        let vp = self.nonces.next_send(hal)?;
        let hdr = header(vp, true);
        let rep = heap.reply_mut(h)?;
        let (hslot, rest) = rep
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        let (tslot, due) = rest
            .split_first_chunk_mut::<TAG_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        let due = due
            .first_chunk_mut::<BLOCK_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        *hslot = hdr;
        let (fixed, pad) = due
            .split_first_chunk_mut::<OLD_NONCE_FIXED_LEN>()
            .ok_or(Error::BufferTooSmall)?;
        if let Some((head, value)) = fixed.split_first_chunk_mut::<2>() {
            *head = OLD_NONCE_HEAD;
            encoding::write_uint_le(nlw, value);
        }
        hal.fill_random(pad)?;
        let nonce = eax_nonce(&hdr, self.role.peer_flag());
        self.aead()?.seal_to(&nonce, &[], due, tslot);
        self.last_sent = NonZeroU64::new(vp);
        Ok(())
    }

    fn receive_sasp_message(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
    ) -> Result<HandlerOutcome, Error> {
        let value = {
            let rep = heap.reply(h)?;
            match rep.split_first() {
                Some((&MSG_OLD_NONCE, v)) if v.len() == OLD_NONCE_MSG_LEN - 1 => {
                    encoding::read_uint_le(v).ok()
                }
                _ => None,
            }
        };
        self.refused = matches!((value, self.last_sent), (Some(v), Some(l)) if v >= l.get());
        match value.map(|v| self.nonces.raise_nfs(v)) {
            Some(Ok(raised)) => {
                crate::count(&mut self.stats.old_nonce_received);
                if raised {
                    crate::count(&mut self.stats.resyncs);
                }
            }
            _ => crate::count(&mut self.stats.malformed),
        }
        Ok(HandlerOutcome::IgnorePacket)
    }

    /// Encrypts the payload in the request of `h` into an SASP packet in its reply.
    /// Equivalent to [`Sasp::send_padded`] without enforced padding.
    pub fn send<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
    ) -> Result<HandlerOutcome, Error> {
        self.send_padded(heap, h, hal, None)
    }

    /// Encrypts the payload in the request of `h` into an SASP packet in its reply,
    /// padded as a payload of `pad_to` bytes would be ("enforced padding"; `pad_to`
    /// below the payload length is [`Error::ValueOutOfRange`]).
    ///
    /// The payload must be non-empty with its first byte below 0x80
    /// ([`Error::ValueOutOfRange`] otherwise). The new NFS is persisted (when its
    /// reserve is used up) before the packet is built.
    pub fn send_padded<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
        pad_to: Option<usize>,
    ) -> Result<HandlerOutcome, Error> {
        heap.clear_reply(h)?;
        if let Err(e) = self.build(heap, h, hal, pad_to) {
            heap.clear_reply(h)?;
            return Err(e);
        }
        Ok(HandlerOutcome::Pass)
    }

    /// Builds a packet of the payload in the request of `h` in its reply (which
    /// must be empty).
    // Inlined into its caller: one frame less on the send path.
    #[inline(always)]
    fn build<H: Storage + Random + ?Sized>(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        hal: &mut H,
        pad_to: Option<usize>,
    ) -> Result<(), Error> {
        let p = {
            let req = heap.request(h)?;
            match req.first() {
                Some(b) if *b < 0x80 => req.len(),
                _ => return Err(Error::ValueOutOfRange),
            }
        };
        let q = pad_to.unwrap_or(p);
        if q < p {
            return Err(Error::ValueOutOfRange);
        }
        let total = due_len(q);
        let c = total - p;
        // The size field (Encoded-Unsigned-Int<max=2>) of `c` padding bytes, if any:
        // its length now, its bytes once the packet's room is taken.
        if c as u64 > encoding::max_uint_value(2) {
            return Err(Error::ValueOutOfRange);
        }
        let clen = if c > 0 {
            encoding::uint_len(c as u64)
        } else {
            0
        };
        if clen > c {
            return Err(Error::ValueOutOfRange);
        }
        // The packet is built in the reply: header, tag and size field in front of
        // the payload's bytes (in place, after the request), then the padding.
        heap.wrap_request(
            h,
            ZEROS.get(..OVERHEAD + clen).ok_or(Error::BufferTooSmall)?,
        )?;
        append_zeros(heap, h, c - clen)?;
        let vp = self.nonces.next_send(hal)?;
        let hdr = header(vp, false);
        let rep = heap.reply_mut(h)?;
        let (head, due) = rep
            .split_at_mut_checked(OVERHEAD)
            .ok_or(Error::BufferTooSmall)?;
        let (hslot, tslot) = head.split_at_mut(HEADER_LEN);
        hslot.copy_from_slice(&hdr);
        let (d_head, d_rest) = due
            .split_at_mut_checked(1 + clen)
            .ok_or(Error::BufferTooSmall)?;
        // With the payload in place, its first byte is the last of `d_head`.
        let first = *d_head.last().ok_or(Error::BufferTooSmall)?;
        let (d_first, d_size) = d_head.split_first_mut().ok_or(Error::BufferTooSmall)?;
        *d_first = first | if c > 0 { 0x80 } else { 0 };
        if c > 0 {
            encoding::encode_uint32(c as u32, 2, d_size)?;
        }
        let d_pad = d_rest.get_mut(p - 1..).ok_or(Error::BufferTooSmall)?;
        hal.fill_random(d_pad)?;
        let nonce = eax_nonce(&hdr, self.role.peer_flag());
        let tslot: &mut [u8; TAG_LEN] = tslot.try_into().map_err(|_| Error::BufferTooSmall)?;
        self.aead()?.seal_to(&nonce, &[], due, tslot);
        self.last_sent = NonZeroU64::new(vp);
        Ok(())
    }
}

/// The value of a kept nonce.
const fn nonce_value(n: Option<NonZeroU64>) -> Option<u64> {
    match n {
        Some(v) => Some(v.get()),
        None => None,
    }
}

/// Where the payload lies in decrypted data: `(offset, length)`, after its first
/// byte was moved (flag cleared) to just before its other bytes, over the size
/// field. The layout is `| first byte | (opt) size | bytes | padding |`.
fn unpad(data: &mut [u8]) -> Result<(usize, usize), Error> {
    let len = data.len();
    let (first, rest) = data.split_first().ok_or(Error::Malformed)?;
    let first = *first;
    if first & 0x80 == 0 {
        return Ok((0, len));
    }
    let (c, clen) = encoding::decode_uint32(rest, 2)?;
    let c = c as usize;
    if c < clen || c > len - 1 {
        return Err(Error::Malformed);
    }
    *data.get_mut(clen).ok_or(Error::Malformed)? = first & 0x7f;
    Ok((clen, len - c))
}

#[cfg(test)]
mod tests;
