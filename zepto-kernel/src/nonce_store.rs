//! Persistent SASP nonces: NFS (Nonce to use For Sending) and NLW (Nonce Lower
//! Watermark) that survive reboots and power cuts with few storage writes
//! (`SimpleIoT/sp.rst`, "Implementation notes", optimized implementation).
//!
//! The store never writes a nonce itself; it writes *marks* that bound every nonce
//! used so far, reserving `reserve` nonces ahead:
//!
//! * sending: a nonce `n` is handed out only once a mark `>= n` is durable. When
//!   `n` passes the mark, the mark becomes `n + reserve - 1` (one write per
//!   `reserve` packets). After a reboot NFS restarts *at* the mark, so the next
//!   nonce is above every nonce that could have been sent before the reboot.
//! * receiving: a nonce `n` above NLW is accepted only once a mark `>= n` is durable
//!   (mark = `n + reserve - 1` when `n` passes it). After a reboot NLW restarts at the
//!   mark, so a replayed packet is rejected; the peer resynchronises with one
//!   "old nonce" round trip.
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
//! | 14 | 2 | CRC-16/IBM-SDLC of bytes 0..14, little-endian |
//!
//! A write goes to the slot *not* holding the newest record, so a torn write can only
//! damage the older copy. On start, the marks are the element-wise maximum over the
//! slots whose CRC is valid: even a torn record that happened to pass the CRC can only
//! raise a mark (wasting nonces), never lower it below the last complete record.

use crate::error::Error;
use crate::hal::Storage;
use crc::{Crc, CRC_16_IBM_SDLC};

/// Largest nonce varying part (47 bits).
pub const MAX_NONCE: u64 = (1 << 47) - 1;

/// Bytes of one record before rounding up to the write granularity.
pub const RECORD_LEN: usize = 16;

/// Default number of nonces reserved per storage write.
pub const DEFAULT_RESERVE: u32 = 256;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// Storage bytes the store occupies for a given write granularity (two slots).
pub const fn storage_len(granularity: usize) -> usize {
    2 * slot_len(granularity)
}

const fn slot_len(granularity: usize) -> usize {
    let g = if granularity == 0 { 1 } else { granularity };
    RECORD_LEN.div_ceil(g) * g
}

fn put_u48(out: &mut [u8], v: u64) {
    for (i, b) in out.iter_mut().take(6).enumerate() {
        *b = (v >> (8 * i)) as u8;
    }
}

fn get_u48(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(6)
        .enumerate()
        .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    seq: u16,
    nfs_mark: u64,
    nlw_mark: u64,
}

impl Record {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        let (head, crc) = r.split_at_mut(RECORD_LEN - 2);
        let (seq, rest) = head.split_at_mut(2);
        seq.copy_from_slice(&self.seq.to_le_bytes());
        let (nfs, nlw) = rest.split_at_mut(6);
        put_u48(nfs, self.nfs_mark);
        put_u48(nlw, self.nlw_mark);
        crc.copy_from_slice(&CRC16.checksum(head).to_le_bytes());
        r
    }

    fn decode(r: &[u8; RECORD_LEN]) -> Option<Record> {
        let (head, crc) = r.split_at(RECORD_LEN - 2);
        let stored = u16::from_le_bytes([*crc.first()?, *crc.get(1)?]);
        if CRC16.checksum(head) != stored {
            return None;
        }
        let nfs_mark = get_u48(head.get(2..8)?);
        let nlw_mark = get_u48(head.get(8..14)?);
        if nfs_mark > MAX_NONCE || nlw_mark > MAX_NONCE {
            return None;
        }
        Some(Record {
            seq: u16::from_le_bytes([*head.first()?, *head.get(1)?]),
            nfs_mark,
            nlw_mark,
        })
    }
}

/// NFS and NLW of one SASP peer pair, kept in RAM and bounded in storage by marks.
#[derive(Debug, Clone)]
pub struct NonceStore {
    base: usize,
    slot: usize,
    reserve: u64,
    /// Last nonce used for sending (NFS); the next one is `nfs + 1`.
    nfs: u64,
    nfs_mark: u64,
    /// Highest nonce received and accepted (NLW).
    nlw: u64,
    nlw_mark: u64,
    seq: u16,
    /// Slot (0 or 1) holding the newest record.
    newest: u8,
    writes: u32,
}

impl NonceStore {
    /// Writes a fresh pair of records (e.g. at pairing, together with a new key):
    /// NFS = `nfs`, NLW = `nlw`. Both slots are written.
    pub fn provision<S: Storage + ?Sized>(
        storage: &mut S,
        base: usize,
        nfs: u64,
        nlw: u64,
    ) -> Result<(), Error> {
        if nfs > MAX_NONCE || nlw > MAX_NONCE {
            return Err(Error::ValueOutOfRange);
        }
        let slot = slot_len(storage.write_granularity());
        check_bounds(storage, base, slot)?;
        let rec = Record {
            seq: 0,
            nfs_mark: nfs,
            nlw_mark: nlw,
        };
        write_slot(storage, base, slot, &rec)?;
        let rec = Record { seq: 1, ..rec };
        write_slot(storage, base + slot, slot, &rec)?;
        storage.flush()
    }

    /// Reads the marks from storage at `base`. After this, NFS and NLW equal their
    /// marks. Fails with [`Error::Storage`] if neither slot holds a valid record
    /// (never provisioned, or the storage is damaged): starting from zero could
    /// repeat nonces.
    ///
    /// `reserve` (at least 1) is how many nonces one write covers.
    pub fn open<S: Storage + ?Sized>(
        storage: &mut S,
        base: usize,
        reserve: u32,
    ) -> Result<Self, Error> {
        let slot = slot_len(storage.write_granularity());
        check_bounds(storage, base, slot)?;
        let mut recs = [None, None];
        for (i, r) in recs.iter_mut().enumerate() {
            let mut buf = [0u8; RECORD_LEN];
            storage.read(base + i * slot, &mut buf)?;
            *r = Record::decode(&buf);
        }
        let (newest, seq) = match recs {
            [Some(a), Some(b)] => {
                if b.seq == a.seq.wrapping_add(1) {
                    (1, b.seq)
                } else {
                    (0, a.seq)
                }
            }
            [Some(a), None] => (0, a.seq),
            [None, Some(b)] => (1, b.seq),
            [None, None] => return Err(Error::Storage),
        };
        let nfs_mark = recs.iter().flatten().map(|r| r.nfs_mark).max().unwrap_or(0);
        let nlw_mark = recs.iter().flatten().map(|r| r.nlw_mark).max().unwrap_or(0);
        Ok(Self {
            base,
            slot,
            reserve: u64::from(reserve.max(1)),
            nfs: nfs_mark,
            nfs_mark,
            nlw: nlw_mark,
            nlw_mark,
            seq,
            newest,
            writes: 0,
        })
    }

    /// Last nonce used for sending (NFS).
    pub const fn nfs(&self) -> u64 {
        self.nfs
    }

    /// Nonce lower watermark: the highest nonce received and accepted (NLW).
    pub const fn nlw(&self) -> u64 {
        self.nlw
    }

    /// The nonce the next [`NonceStore::next_send`] will return (if not exhausted).
    pub const fn peek_send(&self) -> u64 {
        self.nfs + 1
    }

    /// Records written since [`NonceStore::open`].
    pub const fn writes(&self) -> u32 {
        self.writes
    }

    /// Returns a nonce never used for sending before, persisting a new mark first if
    /// needed. On error nothing changed and the nonce must not be used.
    pub fn next_send<S: Storage + ?Sized>(&mut self, storage: &mut S) -> Result<u64, Error> {
        let n = self.nfs.checked_add(1).ok_or(Error::NonceExhausted)?;
        if n > MAX_NONCE {
            return Err(Error::NonceExhausted);
        }
        if n > self.nfs_mark {
            let mark = n.saturating_add(self.reserve - 1).min(MAX_NONCE);
            self.persist(storage, mark, self.nlw_mark)?;
            self.nfs_mark = mark;
        }
        self.nfs = n;
        Ok(n)
    }

    /// Raises NFS to at least `v` (on an "old nonce" message). RAM only: the next
    /// [`NonceStore::next_send`] persists as needed. Values above [`MAX_NONCE`] are
    /// refused with [`Error::ValueOutOfRange`].
    pub fn raise_nfs(&mut self, v: u64) -> Result<bool, Error> {
        if v > MAX_NONCE {
            return Err(Error::ValueOutOfRange);
        }
        if v > self.nfs {
            self.nfs = v;
            Ok(true)
        } else {
            Ok(false)
        }
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
            let mark = n.saturating_add(self.reserve - 1).min(MAX_NONCE);
            self.persist(storage, self.nfs_mark, mark)?;
            self.nlw_mark = mark;
        }
        self.nlw = n;
        Ok(true)
    }

    fn persist<S: Storage + ?Sized>(
        &mut self,
        storage: &mut S,
        nfs_mark: u64,
        nlw_mark: u64,
    ) -> Result<(), Error> {
        let target = 1 - self.newest.min(1);
        let rec = Record {
            seq: self.seq.wrapping_add(1),
            nfs_mark,
            nlw_mark,
        };
        let addr = self.base + usize::from(target) * self.slot;
        write_slot(storage, addr, self.slot, &rec)?;
        storage.flush()?;
        self.seq = rec.seq;
        self.newest = target;
        self.writes = self.writes.saturating_add(1);
        Ok(())
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

/// Writes one record padded to the slot length (whole granules, one write call).
fn write_slot<S: Storage + ?Sized>(
    storage: &mut S,
    addr: usize,
    slot: usize,
    rec: &Record,
) -> Result<(), Error> {
    let enc = rec.encode();
    if slot == RECORD_LEN {
        return storage.write(addr, &enc);
    }
    // Granularity above RECORD_LEN: write the record, then 0xFF up to the granule
    // end in the same physical write where possible (chunks of RECORD_LEN bytes).
    storage.write(addr, &enc)?;
    let mut at = addr + RECORD_LEN;
    let fill = [0xffu8; RECORD_LEN];
    while at < addr + slot {
        let n = (addr + slot - at).min(RECORD_LEN);
        storage.write(at, fill.get(..n).ok_or(Error::Storage)?)?;
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testhal::TestHal;
    use std::collections::HashSet;

    const RES: u32 = 16;

    fn fresh() -> TestHal<64> {
        let mut hal = TestHal::<64>::new(3);
        NonceStore::provision(&mut hal, 0, 0, 0).unwrap();
        hal
    }

    #[test]
    fn record_layout_is_byte_exact() {
        let rec = Record {
            seq: 0x0102,
            nfs_mark: 0x0000_1122_3344_5566,
            nlw_mark: 0x7fff_ffff_ffff,
        };
        let e = rec.encode();
        assert_eq!(
            &e[..14],
            &[0x02, 0x01, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        );
        assert_eq!(u16::from_le_bytes([e[14], e[15]]), CRC16.checksum(&e[..14]));
        assert_eq!(Record::decode(&e), Some(rec));
        let mut bad = e;
        bad[5] ^= 1;
        assert_eq!(Record::decode(&bad), None);
        // Erased storage is not a record.
        assert_eq!(Record::decode(&[0xff; RECORD_LEN]), None);
    }

    #[test]
    fn unprovisioned_storage_is_refused() {
        let mut hal = TestHal::<64>::new(1);
        assert_eq!(
            NonceStore::open(&mut hal, 0, RES).err(),
            Some(Error::Storage)
        );
        assert_eq!(
            NonceStore::open(&mut hal, 2, RES).err(),
            Some(Error::Storage)
        );
        assert_eq!(
            NonceStore::open(&mut hal, 48, RES).err(),
            Some(Error::Storage)
        );
    }

    #[test]
    fn reserve_ahead_writes_once_per_reserve() {
        let mut hal = fresh();
        let mut s = NonceStore::open(&mut hal, 0, RES).unwrap();
        for i in 1..=100u64 {
            assert_eq!(s.next_send(&mut hal).unwrap(), i);
        }
        // Marks at 16, 32, ..., 112: 7 writes.
        assert_eq!(s.writes(), 7);
        let mut again = hal.rebooted();
        let s2 = NonceStore::open(&mut again, 0, RES).unwrap();
        assert_eq!(s2.nfs(), 112);
        assert_eq!(s2.peek_send(), 113);
    }

    #[test]
    fn nlw_survives_reboot_and_rejects_replays() {
        let mut hal = fresh();
        let mut s = NonceStore::open(&mut hal, 0, RES).unwrap();
        assert_eq!(s.accept_received(&mut hal, 5), Ok(true));
        assert_eq!(s.accept_received(&mut hal, 5), Ok(false));
        assert_eq!(s.accept_received(&mut hal, 4), Ok(false));
        assert_eq!(s.accept_received(&mut hal, 9), Ok(true));
        assert_eq!(s.writes(), 1);
        let mut again = hal.rebooted();
        let mut s2 = NonceStore::open(&mut again, 0, RES).unwrap();
        assert!(s2.nlw() >= 9);
        assert_eq!(s2.accept_received(&mut again, 9), Ok(false));
        assert_eq!(
            s2.accept_received(&mut again, MAX_NONCE + 1),
            Err(Error::ValueOutOfRange)
        );
    }

    #[test]
    fn raise_nfs_never_lowers() {
        let mut hal = fresh();
        let mut s = NonceStore::open(&mut hal, 0, RES).unwrap();
        assert_eq!(s.raise_nfs(1000), Ok(true));
        assert_eq!(s.raise_nfs(10), Ok(false));
        assert_eq!(s.raise_nfs(MAX_NONCE + 1), Err(Error::ValueOutOfRange));
        assert_eq!(s.next_send(&mut hal), Ok(1001));
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut hal = TestHal::<64>::new(3);
        NonceStore::provision(&mut hal, 0, MAX_NONCE - 1, 0).unwrap();
        let mut s = NonceStore::open(&mut hal, 0, RES).unwrap();
        assert_eq!(s.next_send(&mut hal), Ok(MAX_NONCE));
        assert_eq!(s.next_send(&mut hal), Err(Error::NonceExhausted));
    }

    #[test]
    fn large_granularity_aligns_slots() {
        let mut hal = TestHal::<256>::new(3);
        hal.granularity = 32;
        assert_eq!(storage_len(32), 64);
        NonceStore::provision(&mut hal, 32, 7, 3).unwrap();
        let mut s = NonceStore::open(&mut hal, 32, RES).unwrap();
        assert_eq!((s.nfs(), s.nlw()), (7, 3));
        s.next_send(&mut hal).unwrap();
        assert_eq!(
            NonceStore::open(&mut hal, 16, RES).err(),
            Some(Error::Storage)
        );
        let mut again = hal.rebooted();
        assert_eq!(
            NonceStore::open(&mut again, 32, RES).unwrap().nfs(),
            7 + RES as u64
        );
    }

    /// One step of the power-cut scenario.
    #[derive(Clone, Copy)]
    enum Step {
        Send,
        Recv(u64),
        Raise(u64),
        Reboot,
    }

    fn scenario() -> Vec<Step> {
        let mut v = Vec::new();
        let mut rx = 0;
        for i in 0..120u64 {
            v.push(Step::Send);
            if i % 3 == 0 {
                rx += 1 + i % 7;
                v.push(Step::Recv(rx));
            }
            if i == 40 {
                v.push(Step::Raise(300));
            }
            if i % 50 == 49 {
                v.push(Step::Reboot);
            }
        }
        v
    }

    /// Runs the scenario with the power failing at granule write `cut` (or never),
    /// rebooting after the cut and carrying on. Returns the total granule writes.
    /// Asserts that no nonce is sent twice and no accepted nonce is accepted again.
    fn run_with_cut(cut: Option<u32>) -> u32 {
        let mut hal = fresh();
        let base_writes = hal.storage_writes;
        hal.power_cut_after = cut;
        let mut store = NonceStore::open(&mut hal, 0, RES).unwrap();
        let mut sent = HashSet::new();
        let mut accepted: HashSet<u64> = HashSet::new();
        for step in scenario() {
            let r = match step {
                Step::Send => store.next_send(&mut hal).map(|n| {
                    assert!(sent.insert(n), "nonce {n} sent twice (cut {cut:?})");
                }),
                Step::Recv(n) => store.accept_received(&mut hal, n).map(|ok| {
                    if ok {
                        assert!(accepted.insert(n));
                    }
                }),
                Step::Raise(v) => store.raise_nfs(v).map(|_| ()),
                Step::Reboot => {
                    // A planned reboot keeps the pending power cut armed.
                    let left = hal.power_cut_after;
                    hal = hal.rebooted();
                    hal.power_cut_after = left;
                    store = NonceStore::open(&mut hal, 0, RES).unwrap();
                    Ok(())
                }
            };
            if r.is_err() || hal.powered_off {
                assert!(hal.powered_off, "error without power cut: {r:?}");
                hal = hal.rebooted();
                store = NonceStore::open(&mut hal, 0, RES).expect("a valid record survives");
                // Every accepted nonce stays rejected after the reboot.
                for n in &accepted {
                    assert_eq!(store.accept_received(&mut hal, *n), Ok(false));
                }
            }
        }
        hal.storage_writes - base_writes
    }

    #[test]
    fn power_cut_at_every_write_never_reuses_a_nonce() {
        let total = run_with_cut(None);
        assert!(total > 0);
        for cut in 0..=total {
            run_with_cut(Some(cut));
        }
    }

    #[test]
    fn writes_per_thousand_packets() {
        for (reserve, max_records) in [(16u32, 63u32), (256, 4)] {
            let mut hal = fresh();
            let mut s = NonceStore::open(&mut hal, 0, reserve).unwrap();
            let before = hal.storage_writes;
            for _ in 0..1000 {
                s.next_send(&mut hal).unwrap();
            }
            assert_eq!(s.writes(), max_records);
            // A record is 16 bytes = 4 granules of 4 bytes.
            assert_eq!(hal.storage_writes - before, 4 * max_records);
            // The two slots share the wear.
            let max_granule = *hal.granule_writes[..8].iter().max().unwrap();
            assert!(u32::from(max_granule) <= max_records / 2 + 2);
        }
        // Request/response traffic: 1000 packets each way moves both marks.
        let mut hal = fresh();
        let mut s = NonceStore::open(&mut hal, 0, DEFAULT_RESERVE).unwrap();
        for i in 1..=1000 {
            s.next_send(&mut hal).unwrap();
            assert_eq!(s.accept_received(&mut hal, i), Ok(true));
        }
        assert_eq!(s.writes(), 8);
    }
}
