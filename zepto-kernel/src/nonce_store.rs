//! Persistent SASP nonces: NFS (Nonce to use For Sending) and NLW (Nonce Lower
//! Watermark) that survive reboots and power cuts with few storage writes
//! (`SimpleIoT/sp.rst`, "Implementation notes", optimized implementation), shared
//! safely by several processes, and started safely on blank storage.
//! `docs/security.md` states the rules this module implements.
//!
//! The store never writes a nonce itself; it writes *marks* that bound every nonce
//! used so far, reserving `reserve` nonces ahead:
//!
//! * sending: a nonce `n` is handed out only once a mark `>= n` is durable. When
//!   `n` passes the mark, the store re-reads storage and takes the range above the
//!   higher of its own mark and the stored one: several processes (or stores) on one
//!   storage thus get disjoint ranges. After a reboot NFS restarts *at* the mark.
//! * receiving: a nonce `n` above NLW is accepted only once a mark `>= n` is durable
//!   (mark = `n + reserve - 1` when `n` passes it). After a reboot NLW restarts at the
//!   mark, so a replayed packet is rejected; the peer resynchronises with one
//!   "old nonce" round trip.
//! * marks only go up. Each write takes the maximum of what it wants and what is
//!   stored. The one exception is [`NonceStore::checkpoint`], which gives back the
//!   unused rest of *this* store's reservation, and only while the newest record is
//!   still the one this store wrote (nobody reserved since).
//! * blank storage (no valid record for this key) starts as the port's
//!   [`BlankStart`] says, never at a value that may have been used: a floor the
//!   port knows to be fresh (the host's wall clock), a random high start, or not at
//!   all. [`NonceStore::provision`] (counters at a chosen value, e.g. 0) is only for a
//!   key that has no records yet.
//!
//! Storage shared by processes is bracketed by [`Storage::lock`] and
//! [`Storage::unlock`] around each read-modify-write.
//!
//! # Record layout
//!
//! Two slots, written alternately, each `RECORD_LEN` bytes rounded up to the storage
//! write granularity and aligned to it:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | sequence number, little-endian, +1 per write (wrapping) |
//! | 2 | 6 | NFS mark, 48-bit little-endian |
//! | 8 | 6 | NLW mark, 48-bit little-endian |
//! | 14 | 4 | key id ([`key_id`]) of the key these nonces belong to |
//! | 18 | 2 | CRC-16/IBM-SDLC of bytes 0..18, little-endian |
//!
//! A write goes to the slot *not* holding the newest record, so a torn write can only
//! damage the older copy. On start, the marks are the element-wise maximum over the
//! slots whose CRC is valid and whose key id matches: even a torn record that
//! happened to pass the CRC can only raise a mark (wasting nonces), never lower it
//! below the last complete record. Records of another key count as blank.

use crate::cipher::{BlockCipher128, KeyInit128};
use crate::eax::cmac;
use crate::error::Error;
use crate::hal::{Random, Storage};
use crc::{Crc, CRC_16_IBM_SDLC};

/// Largest nonce varying part (47 bits).
pub const MAX_NONCE: u64 = (1 << 47) - 1;

/// Bytes of one record before rounding up to the write granularity.
pub const RECORD_LEN: usize = 20;

/// Default number of nonces reserved per storage write.
pub const DEFAULT_RESERVE: u32 = 256;

/// Lowest start of [`BlankStart::RandomHigh`].
pub const RANDOM_START: u64 = 1 << 46;

/// Width of the range [`BlankStart::RandomHigh`] starts in: `[RANDOM_START,
/// RANDOM_START + RANDOM_SPAN)`, which leaves at least 2^45 nonces above any start.
pub const RANDOM_SPAN: u64 = 1 << 45;

/// The wall-clock floor's epoch: 2024-01-01T00:00:00Z, in milliseconds since 1970.
pub const FLOOR_EPOCH_MS: u64 = 1_704_067_200_000;

/// The clock floor advances 2^5 = 32 nonces per millisecond.
pub const FLOOR_SHIFT: u32 = 5;

/// The [`BlankStart::Floor`] value for a wall clock that reads `unix_ms`
/// milliseconds since 1970: milliseconds since [`FLOOR_EPOCH_MS`] times 32. It
/// passes every nonce used under the key before, as long as the clock is right and
/// fewer than 32,000 nonces a second were used on average since that state started;
/// it reaches [`RANDOM_START`] (where random high starts begin) in 2093
/// (`docs/security.md` has the arithmetic). `None` for a clock that reads before
/// 2024 or past that end: every start would be the same value there, so a port
/// must not clamp it.
pub fn clock_floor(unix_ms: u64) -> Option<u64> {
    unix_ms
        .checked_sub(FLOOR_EPOCH_MS)
        .and_then(|d| d.checked_mul(1 << FLOOR_SHIFT))
        .filter(|f| *f < RANDOM_START)
}

/// How far at least past a peer's "old nonce" value a store that started blank
/// moves NFS ([`NonceStore::raise_nfs`]), and how far at least above its own marks
/// a store rewrites records it found gone: the nonces it may have sent (or another
/// process may hold) beyond what the peer or the storage knows of. Each store adds
/// a random spread below this, drawn when it opens, so that stores which know the
/// same value (two blank starts answered with one value, two stores with marks from
/// before a loss) do not land on the same nonces.
pub const LOST_STATE_MARGIN: u64 = 1 << 24;

/// Identifies the key a record belongs to: the first 4 bytes of the CMAC, under the
/// key, of the text "Zepto nonce records" (a MAC value: it tells nothing about the
/// key and nothing EAX computes).
pub type KeyId = [u8; 4];

/// The [`KeyId`] of `key` with cipher `C`.
pub fn key_id<C: BlockCipher128 + KeyInit128>(key: &[u8; 16]) -> Result<KeyId, Error> {
    Ok(key_id_of(&C::new(key)))
}

/// The [`KeyId`] of the key `cipher` was made with (no second key schedule where
/// the expanded key exists already).
pub fn key_id_of<C: BlockCipher128>(cipher: &C) -> KeyId {
    let [a, b, c, d, ..] = cmac(cipher, b"Zepto nonce records");
    [a, b, c, d]
}

/// The key ids of the valid records in the two slots at `base`: lets a port tell
/// blank storage from storage that holds another key's nonces (which
/// [`NonceStore::open`] treats as blank and overwrites).
pub fn stored_keys<S: Storage + ?Sized>(
    storage: &mut S,
    base: usize,
) -> Result<[Option<KeyId>; 2], Error> {
    let slot = slot_len(storage.write_granularity());
    check_bounds(storage, base, slot)?;
    locked(storage, |s| {
        let mut keys = [None, None];
        for (i, k) in keys.iter_mut().enumerate() {
            let mut buf = [0u8; RECORD_LEN];
            s.read(base + i * slot, &mut buf)?;
            *k = Record::decode(&buf).map(|r| r.key);
        }
        Ok(keys)
    })
}

/// The marks (NFS, NLW) stored for `key` at `base`, which a store opened now would
/// start from; `None` if storage holds no valid record for the key.
pub fn stored_marks<S: Storage + ?Sized>(
    storage: &mut S,
    base: usize,
    key: KeyId,
) -> Result<Option<(u64, u64)>, Error> {
    let slot = slot_len(storage.write_granularity());
    check_bounds(storage, base, slot)?;
    let s = locked(storage, |s| read_stored(s, base, slot, key))?;
    Ok(s.newest.map(|_| (s.nfs_mark, s.nlw_mark)))
}

/// What [`NonceStore::open`] does when storage holds no valid record for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlankStart {
    /// Fail with [`Error::NotProvisioned`]: the port stays off the network until an
    /// explicit act provisions the records.
    Refuse,
    /// NFS and NLW start at this value, which the port knows is above every nonce
    /// the key may have used (the host's wall clock, see `docs/security.md`).
    Floor(u64),
    /// NFS and NLW start at independent random values in
    /// `[RANDOM_START, RANDOM_START + RANDOM_SPAN)` from the platform's RNG: for
    /// devices with a key but blank records and no clock to take a floor from.
    RandomHigh,
}

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// Storage bytes the store occupies for a given write granularity (two slots).
pub const fn storage_len(granularity: usize) -> usize {
    2 * slot_len(granularity)
}

const fn slot_len(granularity: usize) -> usize {
    let g = if granularity == 0 { 1 } else { granularity };
    RECORD_LEN.div_ceil(g) * g
}

/// Puts the low 6 bytes of `v`, little-endian, into `out` (6 bytes long).
fn put_u48(out: &mut [u8], v: u64) {
    for (o, b) in out.iter_mut().zip(v.to_le_bytes()) {
        *o = b;
    }
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    seq: u16,
    nfs_mark: u64,
    nlw_mark: u64,
    key: KeyId,
}

impl Record {
    #[cfg(test)]
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        self.encode_into(&mut r);
        r
    }

    /// Encodes the record into `r`; returns its tag.
    fn encode_into(&self, r: &mut [u8; RECORD_LEN]) -> Tag {
        let (head, crc) = r.split_at_mut(RECORD_LEN - 2);
        let (seq, rest) = head.split_at_mut(2);
        seq.copy_from_slice(&self.seq.to_le_bytes());
        let (nfs, rest) = rest.split_at_mut(6);
        let (nlw, key) = rest.split_at_mut(6);
        put_u48(nfs, self.nfs_mark);
        put_u48(nlw, self.nlw_mark);
        key.copy_from_slice(&self.key);
        let c = CRC16.checksum(head);
        crc.copy_from_slice(&c.to_le_bytes());
        Tag::new(self.seq, c)
    }

    /// Sequence number and CRC of an encoded record: what identifies a record
    /// this store wrote.
    fn tag(e: &[u8; RECORD_LEN]) -> Tag {
        Tag(u32::from_le_bytes([
            e[0],
            e[1],
            e[RECORD_LEN - 2],
            e[RECORD_LEN - 1],
        ]))
    }

    /// The record in `r`, if its CRC is valid and both marks are at most
    /// [`MAX_NONCE`] (bit 47 clear).
    fn decode(r: &[u8; RECORD_LEN]) -> Option<Record> {
        let [s0, s1, a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5, k0, k1, k2, k3, c0, c1] = *r;
        let (head, _) = r.split_first_chunk::<{ RECORD_LEN - 2 }>()?;
        if CRC16.checksum(head) != u16::from_le_bytes([c0, c1]) || (a5 | b5) & 0x80 != 0 {
            return None;
        }
        Some(Record {
            seq: u16::from_le_bytes([s0, s1]),
            nfs_mark: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, 0, 0]),
            nlw_mark: u64::from_le_bytes([b0, b1, b2, b3, b4, b5, 0, 0]),
            key: [k0, k1, k2, k3],
        })
    }
}

/// The mark a record write raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// NFS's: a range of nonces to send with.
    Send,
    /// NLW's: before a received nonce is accepted.
    Receive,
}

/// Identifies a written record: its sequence number (low 16 bits) and CRC (high
/// 16 bits), one word to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag(u32);

impl Tag {
    fn new(seq: u16, crc: u16) -> Self {
        Tag(u32::from(seq) | (u32::from(crc) << 16))
    }

    fn seq(self) -> u16 {
        self.0 as u16
    }
}

/// What storage holds for one key: the slot and tag of the newest valid record,
/// and the element-wise maximum of the marks.
#[derive(Debug, Clone, Copy)]
struct Stored {
    newest: Option<(u8, Tag)>,
    nfs_mark: u64,
    nlw_mark: u64,
}

impl Stored {
    /// The slot the next write goes to: the one not holding the newest record.
    fn target(&self) -> u8 {
        match self.newest {
            Some((0, _)) => 1,
            _ => 0,
        }
    }

    fn next_seq(&self) -> u16 {
        self.newest.map_or(0, |(_, t)| t.seq().wrapping_add(1))
    }
}

/// NFS and NLW of one SASP peer pair, kept in RAM and bounded in storage by marks.
#[derive(Debug)]
pub struct NonceStore {
    base: usize,
    slot: usize,
    /// Nonces one write covers (at least 1).
    reserve: u32,
    key: KeyId,
    /// Last nonce used for sending (NFS); the next one is `nfs + 1`.
    nfs: u64,
    nfs_mark: u64,
    /// Highest nonce received and accepted (NLW).
    nlw: u64,
    nlw_mark: u64,
    /// The record this store wrote last (to know whether anyone wrote since).
    last_written: Tag,
    /// Whether this store wrote a record yet (`last_written` means nothing before).
    wrote: bool,
    /// The NFS mark of that record. Without a loss, storage never holds less: a
    /// checkpoint of another store keeps what it found there (see
    /// [`stored_lost`]).
    written_nfs: u64,
    /// Marks (NFS, NLW) that other stores had written when this one last found
    /// storage changed by someone else: a checkpoint never goes below them.
    others: (u64, u64),
    started_blank: bool,
    /// A store that started blank still owes its one resynchronisation margin.
    margin_due: bool,
    /// This store's random spread, added to [`LOST_STATE_MARGIN`].
    spread: u32,
    writes: u32,
}

impl NonceStore {
    /// A store that was never opened: it hands out no nonce for sending and
    /// accepts none ([`Error::NonceExhausted`], old nonces), until the device
    /// replaces it with an opened one.
    pub(crate) const fn unopened() -> Self {
        Self {
            base: 0,
            slot: 0,
            reserve: 1,
            key: [0; 4],
            nfs: MAX_NONCE,
            nfs_mark: MAX_NONCE,
            nlw: MAX_NONCE,
            nlw_mark: MAX_NONCE,
            last_written: Tag(0),
            wrote: false,
            written_nfs: 0,
            others: (0, 0),
            started_blank: false,
            margin_due: false,
            spread: 0,
            writes: 0,
        }
    }

    /// Closes the store: from now on it hands out no nonce and accepts none, as
    /// [`NonceStore::unopened`], and writes nothing (its counters equal their
    /// marks, all at [`MAX_NONCE`]).
    pub(crate) fn close(&mut self) {
        (self.nfs, self.nfs_mark, self.nlw, self.nlw_mark) =
            (MAX_NONCE, MAX_NONCE, MAX_NONCE, MAX_NONCE);
    }

    /// Writes a fresh pair of records for `key` (e.g. at pairing, together with a new
    /// key): NFS = `nfs`, NLW = `nlw`. Both slots are written.
    ///
    /// Refused with [`Error::KeyInUse`] when storage already holds a valid record for
    /// this key: counters of a key in use may only go up, which [`NonceStore::open`]
    /// takes care of.
    pub fn provision<S: Storage + ?Sized>(
        storage: &mut S,
        base: usize,
        key: KeyId,
        nfs: u64,
        nlw: u64,
    ) -> Result<(), Error> {
        if nfs > MAX_NONCE || nlw > MAX_NONCE {
            return Err(Error::ValueOutOfRange);
        }
        let slot = slot_len(storage.write_granularity());
        check_bounds(storage, base, slot)?;
        locked(storage, |s| {
            let stored = read_stored(s, base, slot, key)?;
            if stored.newest.is_some() {
                return Err(Error::KeyInUse);
            }
            write_records(s, base, slot, key, &stored, nfs, nlw, Writes::Both).map(|_| ())
        })
    }

    /// Reads the marks for `key` from storage at `base`. After this, NFS and NLW
    /// equal their marks. When storage holds no valid record for this key (never
    /// provisioned, wiped, damaged, or another key's), the store starts as `blank`
    /// says and writes its first records; [`NonceStore::started_blank`] tells.
    ///
    /// `reserve` (at least 1) is how many nonces one write covers.
    pub fn open<S: Storage + Random + ?Sized>(
        storage: &mut S,
        base: usize,
        reserve: u32,
        key: KeyId,
        blank: BlankStart,
    ) -> Result<Self, Error> {
        let slot = slot_len(storage.write_granularity());
        check_bounds(storage, base, slot)?;
        let mut spread = [0u8; 4];
        storage.fill_random(&mut spread)?;
        let spread = u32::from_le_bytes(spread) & (LOST_STATE_MARGIN as u32 - 1);
        let mut store = Self {
            base,
            slot,
            reserve: reserve.max(1),
            key,
            nfs: 0,
            nfs_mark: 0,
            nlw: 0,
            nlw_mark: 0,
            last_written: Tag(0),
            wrote: false,
            written_nfs: 0,
            others: (0, 0),
            started_blank: false,
            margin_due: false,
            spread,
            writes: 0,
        };
        locked(storage, |s| {
            let stored = read_stored(s, base, slot, key)?;
            let (nfs, nlw) = if stored.newest.is_some() {
                (stored.nfs_mark, stored.nlw_mark)
            } else {
                let (nfs, nlw) = blank_start(s, blank)?;
                let tag = write_records(s, base, slot, key, &stored, nfs, nlw, Writes::Both)?;
                store.last_written = tag;
                store.wrote = true;
                store.written_nfs = nfs;
                store.writes = 2;
                store.started_blank = true;
                store.margin_due = true;
                (nfs, nlw)
            };
            (store.nfs, store.nfs_mark, store.nlw, store.nlw_mark) = (nfs, nfs, nlw, nlw);
            Ok(())
        })?;
        Ok(store)
    }

    /// Last nonce used for sending (NFS).
    pub const fn nfs(&self) -> u64 {
        self.nfs
    }

    /// Nonce lower watermark: the highest nonce received and accepted (NLW).
    pub const fn nlw(&self) -> u64 {
        self.nlw
    }

    /// The nonce the next [`NonceStore::next_send`] will return, unless storage shows
    /// that another store reserved it meanwhile (after [`NonceStore::reserve_next`]
    /// it cannot).
    pub const fn peek_send(&self) -> u64 {
        self.nfs + 1
    }

    /// Records written since [`NonceStore::open`].
    pub const fn writes(&self) -> u32 {
        self.writes
    }

    /// True if [`NonceStore::open`] found no records for the key and started as its
    /// [`BlankStart`] said.
    pub const fn started_blank(&self) -> bool {
        self.started_blank
    }

    /// Returns a nonce never used for sending before, persisting a new mark first if
    /// needed. On error nothing changed and the nonce must not be used.
    pub fn next_send<S: Storage + ?Sized>(&mut self, storage: &mut S) -> Result<u64, Error> {
        let n = self.reserve_next(storage)?;
        self.nfs = n;
        Ok(n)
    }

    /// Makes sure the nonce the next [`NonceStore::next_send`] returns is this
    /// store's own (reserving a range first if needed, above every range others
    /// reserved) and returns it: a packet ID announced from it (to SAGDP) is the
    /// nonce the packet will carry. Until then only an "old nonce" message
    /// ([`NonceStore::raise_nfs`]) can move it.
    pub fn reserve_next<S: Storage + ?Sized>(&mut self, storage: &mut S) -> Result<u64, Error> {
        if self.nfs >= MAX_NONCE {
            return Err(Error::NonceExhausted);
        }
        let n = self.nfs + 1;
        if n > self.nfs_mark {
            // NFS is now just below the nonce the new mark covers.
            self.write_mark(storage, Mark::Send, n)?;
        }
        Ok(self.nfs + 1)
    }

    /// Writes a record whose `mark` covers `n` and the reserve above it before `n`
    /// is used, with storage locked; `n` is above this store's `mark`. For sending,
    /// `n` goes above every range storage shows reserved by anyone, and NFS moves to
    /// just below it.
    #[inline(never)]
    fn write_mark<S: Storage + ?Sized>(
        &mut self,
        storage: &mut S,
        mark: Mark,
        n: u64,
    ) -> Result<(), Error> {
        storage.lock()?;
        let r = self.write_mark_locked(storage, mark, n);
        storage.unlock();
        r
    }

    /// [`NonceStore::write_mark`] with storage locked.
    fn write_mark_locked<S: Storage + ?Sized>(
        &mut self,
        s: &mut S,
        mark: Mark,
        n: u64,
    ) -> Result<(), Error> {
        let stored = read_stored(s, self.base, self.slot, self.key)?;
        let found_lost = self.lost(&stored);
        let lost = found_lost.unwrap_or(0);
        // Each mark at least as stored, as this store has it, and as a loss needs it:
        // the other mark is written so, the raised one goes above that.
        let mut marks = [
            stored.nfs_mark.max(self.nfs_mark).max(lost),
            stored.nlw_mark.max(self.nlw_mark).max(lost),
        ];
        let send = mark == Mark::Send;
        let [nfs_mark, nlw_mark] = &mut marks;
        let raised = if send { nfs_mark } else { nlw_mark };
        let floor = *raised;
        // Sending: above our own range and above every range reserved by anyone
        // else (`n` is above this store's mark already). Receiving: after a loss, as
        // high as a send's write puts it, as the margin stands for what other stores
        // accepted before the loss, too.
        let n = if send {
            n.max(floor.saturating_add(1))
        } else {
            n
        };
        if n > MAX_NONCE {
            return Err(Error::NonceExhausted);
        }
        // `n` is at most 2^47 - 1 and the reserve below 2^32: the sum cannot
        // overflow.
        *raised = (n + (u64::from(self.reserve) - 1))
            .min(MAX_NONCE)
            .max(floor);
        let [nfs, nlw] = marks;
        let (base, slot, key) = (self.base, self.slot, self.key);
        let tag = write_records(s, base, slot, key, &stored, nfs, nlw, Writes::One)?;
        self.note_write(tag, nfs, &stored, found_lost);
        if send {
            self.nfs_mark = nfs;
            // `n` is above the old NFS: skipping to just below it loses nothing.
            self.nfs = n - 1;
        } else {
            // Storage covers every nonce up to its NLW mark, whoever raised it; the
            // NFS mark stays this store's own range (others' ranges are theirs).
            self.nlw_mark = nlw;
        }
        Ok(())
    }

    /// Raises NFS to at least `v` (on an "old nonce" message). RAM only: the next
    /// [`NonceStore::next_send`] persists as needed. Values above [`MAX_NONCE`] are
    /// refused with [`Error::ValueOutOfRange`].
    ///
    /// A store that [started blank](NonceStore::started_blank) knows nothing of the
    /// nonces it sent before its records were lost, some of which the peer may never
    /// have received: the first time it is raised, it moves its margin
    /// ([`LOST_STATE_MARGIN`] plus its spread) past `v`. Later raises name values of its own start (a peer's mark a little
    /// ahead of what it accepted) and move it to `v` only: a margin each time would
    /// burn 2^24 nonces per resynchronisation.
    pub fn raise_nfs(&mut self, v: u64) -> Result<bool, Error> {
        if v > MAX_NONCE {
            return Err(Error::ValueOutOfRange);
        }
        if v <= self.nfs {
            return Ok(false);
        }
        self.nfs = if self.margin_due {
            self.margin_due = false;
            v.saturating_add(self.margin()).min(MAX_NONCE)
        } else {
            v
        };
        Ok(true)
    }

    /// Accepts a received nonce if it is above NLW: persists a new mark first if
    /// needed, then sets NLW to `n`. Returns `Ok(false)` for an old nonce (nothing
    /// changes). On error nothing changed and the packet must be dropped.
    pub fn accept_received<S: Storage + ?Sized>(
        &mut self,
        storage: &mut S,
        n: u64,
    ) -> Result<bool, Error> {
        if n > MAX_NONCE {
            return Err(Error::ValueOutOfRange);
        }
        if n <= self.nlw {
            return Ok(false);
        }
        if n > self.nlw_mark {
            self.write_mark(storage, Mark::Receive, n)?;
        }
        self.nlw = n;
        Ok(true)
    }

    /// Gives back the unused rest of this store's reservations, e.g. before a clean
    /// shutdown or a deep sleep that loses RAM: the stored marks become the exact NFS
    /// and NLW, so a restart continues exactly here and the peer needs no
    /// resynchronisation.
    ///
    /// Only while the newest stored record is the one this store wrote: if another
    /// process (or store) wrote since, its marks may cover nonces it holds, and
    /// nothing is written. If the records are gone, they are written again above
    /// this store's marks (as any write would).
    ///
    /// Both slots are written (two record writes), because [`NonceStore::open`] takes
    /// the maximum over the slots: a power cut during the first write leaves the
    /// reserved marks in force (safe), one during the second leaves the first slot's
    /// exact values covering everything. Does nothing if the marks are exact already.
    pub fn checkpoint<S: Storage + ?Sized>(&mut self, storage: &mut S) -> Result<(), Error> {
        if self.nfs_mark == self.nfs && self.nlw_mark == self.nlw {
            return Ok(());
        }
        storage.lock()?;
        let r = self.checkpoint_locked(storage);
        storage.unlock();
        r
    }

    /// [`NonceStore::checkpoint`] with storage locked.
    fn checkpoint_locked<S: Storage + ?Sized>(&mut self, s: &mut S) -> Result<(), Error> {
        // Never below what others had reserved when this store last wrote.
        let nfs = self.nfs.max(self.others.0);
        let nlw = self.nlw.max(self.others.1);
        let stored = read_stored(s, self.base, self.slot, self.key)?;
        let lost = self.lost(&stored);
        let (nfs, nlw) = match lost {
            Some(lost) => (lost, lost),
            None if self.newest_is_mine(&stored) => (nfs, nlw),
            None => return Ok(()),
        };
        let (base, slot, key) = (self.base, self.slot, self.key);
        let tag = write_records(s, base, slot, key, &stored, nfs, nlw, Writes::EachDurable)?;
        self.note_write(tag, nfs, &stored, lost);
        self.writes = self.writes.saturating_add(1);
        // The rest of the range is given back: the next send reserves anew.
        self.nfs_mark = self.nfs;
        self.nlw_mark = nlw.max(self.nlw);
        Ok(())
    }

    /// The highest value this store knows of: its counters, its marks, and the
    /// marks others had written.
    #[inline(never)]
    fn own_max(&self) -> u64 {
        self.nfs
            .max(self.nfs_mark)
            .max(self.nlw_mark)
            .max(self.others.0)
            .max(self.others.1)
    }

    /// [`LOST_STATE_MARGIN`] plus this store's spread.
    fn margin(&self) -> u64 {
        LOST_STATE_MARGIN + u64::from(self.spread)
    }

    /// The least NFS mark storage holds unless the records were lost: what this
    /// store wrote last, and what others had written when it did.
    fn seen(&self) -> u64 {
        self.written_nfs.max(self.others.0)
    }

    /// If `stored` shows the records lost, the value every mark must be raised to
    /// (see [`stored_lost`]), from what this store knows now.
    fn lost(&self, stored: &Stored) -> Option<u64> {
        stored_lost(stored, self.seen(), self.own_max(), self.margin())
    }

    /// Whether the newest record in `stored` is the one this store wrote last.
    fn newest_is_mine(&self, stored: &Stored) -> bool {
        self.wrote && matches!(stored.newest, Some((_, n)) if n == self.last_written)
    }

    /// Remembers a write of the record `tag` with the NFS mark `nfs_mark` that
    /// found `found` in storage, `lost` being
    /// [`NonceStore::lost`] of it before the write. If the newest record found was not
    /// this store's own, someone else wrote meanwhile: what was stored counts as
    /// theirs from now on. If the records were lost, the margin written above what
    /// this store knew stands for ranges others may hold: no checkpoint may go below
    /// it.
    fn note_write(&mut self, tag: Tag, nfs_mark: u64, found: &Stored, lost: Option<u64>) {
        let mine = self.newest_is_mine(found);
        if let Some(lost) = lost {
            self.others = (lost, lost);
        } else if !mine {
            self.others = (found.nfs_mark, found.nlw_mark);
        }
        self.last_written = tag;
        self.wrote = true;
        self.written_nfs = nfs_mark;
        self.writes = self.writes.saturating_add(1);
    }
}

/// Runs `f` between [`Storage::lock`] and [`Storage::unlock`].
fn locked<S: Storage + ?Sized, T>(
    storage: &mut S,
    f: impl FnOnce(&mut S) -> Result<T, Error>,
) -> Result<T, Error> {
    storage.lock()?;
    let r = f(storage);
    storage.unlock();
    r
}

/// If the records were lost, the value every mark must be raised to: `margin` (at
/// least [`LOST_STATE_MARGIN`]) above the highest value the store knows of (`own`),
/// to cover reservations other processes may still hold.
///
/// Lost means: storage holds no record for the key (the file was deleted, the
/// device wiped), or an NFS mark below `seen`, what this store wrote last or found
/// others had written then (the file was deleted and made again by a newcomer that
/// started blank, or put back from a backup). Without a loss that cannot be: every
/// write keeps the maximum of what it found, and a checkpoint (the one write that
/// lowers) happens only while its writer's record is the newest, so it writes at
/// least what that writer found, which is at least what anyone wrote before. Every
/// open store has seen records (it read them, or wrote them when it found none), so
/// no record at all is a loss too, whether or not this store wrote since.
fn stored_lost(stored: &Stored, seen: u64, own: u64, margin: u64) -> Option<u64> {
    (stored.newest.is_none() || stored.nfs_mark < seen)
        .then(|| own.saturating_add(margin).min(MAX_NONCE))
}

/// The start values of a blank store.
fn blank_start<S: Storage + Random + ?Sized>(
    storage: &mut S,
    blank: BlankStart,
) -> Result<(u64, u64), Error> {
    match blank {
        BlankStart::Refuse => Err(Error::NotProvisioned),
        BlankStart::Floor(f) if f <= MAX_NONCE => Ok((f, f)),
        BlankStart::Floor(_) => Err(Error::ValueOutOfRange),
        BlankStart::RandomHigh => {
            let mut r = [0u8; 16];
            storage.fill_random(&mut r)?;
            let (a, b) = r.split_at(8);
            let pick = |bytes: &[u8]| {
                let mut w = [0u8; 8];
                w.copy_from_slice(bytes);
                RANDOM_START + u64::from_le_bytes(w) % RANDOM_SPAN
            };
            Ok((pick(a), pick(b)))
        }
    }
}

/// Reads both slots; only valid records of `key` count.
fn read_stored<S: Storage + ?Sized>(
    storage: &mut S,
    base: usize,
    slot: usize,
    key: KeyId,
) -> Result<Stored, Error> {
    let mut found = Stored {
        newest: None,
        nfs_mark: 0,
        nlw_mark: 0,
    };
    for i in 0..2u8 {
        let mut buf = [0u8; RECORD_LEN];
        storage.read(base + usize::from(i) * slot, &mut buf)?;
        let Some(r) = Record::decode(&buf).filter(|r| r.key == key) else {
            continue;
        };
        let tag = Record::tag(&buf);
        // Slot 1 holds the newest record unless slot 0's follows it.
        found.newest = match found.newest {
            Some((0, a)) if r.seq != a.seq().wrapping_add(1) => Some((0, a)),
            _ => Some((i, tag)),
        };
        found.nfs_mark = found.nfs_mark.max(r.nfs_mark);
        found.nlw_mark = found.nlw_mark.max(r.nlw_mark);
    }
    Ok(found)
}

/// How [`write_records`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// One record, then a flush.
    One,
    /// Two records (both slots), then a flush: a blank store's first records.
    Both,
    /// Two records, each followed by a flush: a checkpoint, whose first record
    /// keeps the reserved marks of the older slot in force until it is durable.
    EachDurable,
}

/// Writes records with the given marks, each into the slot after the newest one
/// (`stored`'s, then the one just written), with sequence numbers following it, and
/// makes them durable as `writes` says; returns the last record's tag. (Out of line:
/// its buffers are not part of its callers' frames while they read storage.)
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn write_records<S: Storage + ?Sized>(
    storage: &mut S,
    base: usize,
    slot: usize,
    key: KeyId,
    stored: &Stored,
    nfs_mark: u64,
    nlw_mark: u64,
    writes: Writes,
) -> Result<Tag, Error> {
    let (mut target, mut seq) = (stored.target(), stored.next_seq());
    let mut left = if writes == Writes::One { 1u8 } else { 2 };
    loop {
        let rec = Record {
            seq,
            nfs_mark,
            nlw_mark,
            key,
        };
        let tag = write_slot(storage, base + usize::from(target) * slot, slot, &rec)?;
        left -= 1;
        if left == 0 || writes == Writes::EachDurable {
            storage.flush()?;
        }
        if left == 0 {
            return Ok(tag);
        }
        target ^= 1;
        seq = seq.wrapping_add(1);
    }
}

fn check_bounds<S: Storage + ?Sized>(storage: &S, base: usize, slot: usize) -> Result<(), Error> {
    let g = storage.write_granularity().max(1);
    let end = base.checked_add(2 * slot).ok_or(Error::Storage)?;
    if !base.is_multiple_of(g) || end > storage.size() {
        return Err(Error::Storage);
    }
    Ok(())
}

/// Slots up to this size are written with one call (record and 0xFF padding).
const ONE_WRITE: usize = 32;

/// Writes one record padded with 0xFF to the slot length (whole granules), in calls
/// of at most [`ONE_WRITE`] bytes (one for slots up to that size); returns its tag.
fn write_slot<S: Storage + ?Sized>(
    storage: &mut S,
    addr: usize,
    slot: usize,
    rec: &Record,
) -> Result<Tag, Error> {
    // The record, then 0xFF; after the first call, 0xFF only.
    let mut buf = [0xffu8; ONE_WRITE];
    let (enc, _) = buf
        .split_first_chunk_mut::<RECORD_LEN>()
        .ok_or(Error::Storage)?;
    let tag = rec.encode_into(enc);
    let mut at = 0;
    while at < slot {
        let n = (slot - at).min(ONE_WRITE);
        storage.write(addr + at, buf.get(..n).ok_or(Error::Storage)?)?;
        buf = [0xff; ONE_WRITE];
        at += n;
    }
    Ok(tag)
}

#[cfg(test)]
mod tests;
