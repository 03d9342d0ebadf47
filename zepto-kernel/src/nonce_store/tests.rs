use super::*;
use crate::testhal::TestHal;
use proptest::prelude::*;
use std::collections::HashSet;

const RES: u32 = 16;
const K: KeyId = [0x4b, 0x45, 0x59, 0x31];
const OTHER: KeyId = [0x4b, 0x45, 0x59, 0x32];

fn fresh() -> TestHal<64> {
    let mut hal = TestHal::<64>::new(3);
    NonceStore::provision(&mut hal, 0, K, 0, 0).unwrap();
    hal
}

fn open(hal: &mut TestHal<64>) -> NonceStore {
    NonceStore::open(hal, 0, RES, K, BlankStart::Refuse).unwrap()
}

/// The marks storage holds for `K`, as a restart would see them.
fn stored_marks<const S: usize>(hal: &mut TestHal<S>) -> (u64, u64) {
    let s = read_stored(hal, 0, slot_len(hal.granularity), K).unwrap();
    assert!(s.newest.is_some(), "no record for the key");
    (s.nfs_mark, s.nlw_mark)
}

#[test]
fn record_layout_is_byte_exact() {
    let rec = Record {
        seq: 0x0102,
        nfs_mark: 0x0000_1122_3344_5566,
        nlw_mark: 0x7fff_ffff_ffff,
        key: [0xa1, 0xb2, 0xc3, 0xd4],
    };
    let e = rec.encode();
    assert_eq!(
        &e[..18],
        &[
            0x02, 0x01, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            0xa1, 0xb2, 0xc3, 0xd4
        ]
    );
    assert_eq!(u16::from_le_bytes([e[18], e[19]]), CRC16.checksum(&e[..18]));
    assert_eq!(Record::decode(&e), Some(rec));
    for i in 0..RECORD_LEN {
        let mut bad = e;
        bad[i] ^= 0x10;
        assert_eq!(Record::decode(&bad), None, "flip in byte {i} not caught");
    }
    // Erased storage is not a record.
    assert_eq!(Record::decode(&[0xff; RECORD_LEN]), None);
}

/// A record whose CRC is valid but whose NFS or NLW mark has bit 47 set (above
/// `MAX_NONCE`) is not a record; `MAX_NONCE` itself is.
#[test]
fn a_mark_above_max_nonce_is_refused_even_with_a_valid_crc() {
    for (nfs_mark, nlw_mark, valid) in [
        (MAX_NONCE, MAX_NONCE, true),
        (MAX_NONCE + 1, 0, false),
        (0, MAX_NONCE + 1, false),
        (0xffff_ffff_ffff, 5, false),
        (5, 0xffff_ffff_ffff, false),
    ] {
        let rec = Record {
            seq: 7,
            nfs_mark,
            nlw_mark,
            key: K,
        };
        assert_eq!(Record::decode(&rec.encode()).is_some(), valid, "{rec:?}");
    }
}

/// Both slots at a start (one flush), one record per mark write (one flush), and
/// two records per checkpoint, each flushed before the next: the records go to
/// alternate slots with sequence numbers counting up.
#[test]
fn each_write_is_made_durable_as_its_kind_needs() {
    let seqs = |hal: &TestHal<64>| {
        let slot = slot_len(hal.granularity);
        [0, slot].map(|at| {
            let bytes: [u8; RECORD_LEN] = hal.storage[at..at + RECORD_LEN].try_into().unwrap();
            Record::decode(&bytes).unwrap().seq
        })
    };
    let mut hal = TestHal::<64>::new(1);
    NonceStore::provision(&mut hal, 0, K, 0, 0).unwrap();
    assert_eq!((hal.flushes, seqs(&hal)), (1, [0, 1]));
    let mut hal = TestHal::<64>::new(1);
    let mut s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(100)).unwrap();
    assert_eq!((hal.flushes, seqs(&hal)), (1, [0, 1]));
    s.next_send(&mut hal).unwrap();
    assert_eq!((hal.flushes, seqs(&hal)), (2, [2, 1]));
    assert_eq!(s.accept_received(&mut hal, 500), Ok(true));
    assert_eq!((hal.flushes, seqs(&hal)), (3, [2, 3]));
    s.checkpoint(&mut hal).unwrap();
    assert_eq!((hal.flushes, seqs(&hal)), (5, [4, 5]));
    assert_eq!(s.writes(), 6);
    // A cut at the checkpoint's second record: its first is durable, exact values.
    let mut hal = fresh();
    let mut s = open(&mut hal);
    s.next_send(&mut hal).unwrap();
    let granules = u32::try_from(slot_len(hal.granularity) / hal.granularity).unwrap();
    let flushes = hal.flushes;
    hal.power_cut_after = Some(granules);
    assert!(s.checkpoint(&mut hal).is_err());
    assert_eq!(hal.flushes, flushes + 1);
}

#[test]
fn key_id_is_a_cmac_of_a_fixed_text() {
    use aes::Aes128;
    use cmac::{Cmac, KeyInit, Mac};
    let key = [0x2b; 16];
    let mut m = <Cmac<aes09::Aes128> as KeyInit>::new_from_slice(&key).unwrap();
    m.update(b"Zepto nonce records");
    let want = m.finalize().into_bytes();
    assert_eq!(key_id::<Aes128>(&key).unwrap(), want[..4]);
    assert_ne!(
        key_id::<Aes128>(&key).unwrap(),
        key_id::<Aes128>(&[0x2c; 16]).unwrap()
    );
}

#[test]
fn blank_storage_follows_the_policy() {
    // Refuse: an error and nothing written.
    let mut hal = TestHal::<64>::new(1);
    assert_eq!(
        NonceStore::open(&mut hal, 0, RES, K, BlankStart::Refuse).err(),
        Some(Error::NotProvisioned)
    );
    assert_eq!(hal.storage_writes, 0);
    // Floor: both counters start there, records are written at once.
    let mut s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(5000)).unwrap();
    assert!(s.started_blank());
    assert_eq!((s.nfs(), s.nlw()), (5000, 5000));
    assert_eq!(stored_marks(&mut hal), (5000, 5000));
    assert_eq!(s.next_send(&mut hal), Ok(5001));
    // Reopened: not blank any more, resumes above what was handed out.
    let mut again = hal.rebooted();
    let r = NonceStore::open(&mut again, 0, RES, K, BlankStart::Floor(0)).unwrap();
    assert!(!r.started_blank());
    assert!(r.peek_send() > 5001);
    assert_eq!(hal.unlocked_writes, 0);
}

#[test]
fn random_high_start_is_in_range_and_differs_per_start() {
    let mut starts = HashSet::new();
    for seed in 0..64 {
        let mut hal = TestHal::<64>::new(2 * seed + 1);
        let s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::RandomHigh).unwrap();
        for v in [s.nfs(), s.nlw()] {
            assert!((RANDOM_START..RANDOM_START + RANDOM_SPAN).contains(&v));
        }
        assert_ne!(s.nfs(), s.nlw(), "NFS and NLW come from separate draws");
        assert!(starts.insert(s.nfs()));
    }
}

#[test]
fn another_keys_records_count_as_blank() {
    let mut hal = TestHal::<64>::new(1);
    NonceStore::provision(&mut hal, 0, OTHER, 900, 900).unwrap();
    let s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(7)).unwrap();
    assert!(s.started_blank());
    assert_eq!(s.nfs(), 7);
    // The other key's records are gone now; its next open starts blank too.
    assert_eq!(
        NonceStore::open(&mut hal, 0, RES, OTHER, BlankStart::Refuse).err(),
        Some(Error::NotProvisioned)
    );
}

#[test]
fn provisioning_a_key_in_use_is_refused() {
    let mut hal = fresh();
    let mut s = open(&mut hal);
    for _ in 0..20 {
        s.next_send(&mut hal).unwrap();
    }
    let before = hal.storage;
    assert_eq!(
        NonceStore::provision(&mut hal, 0, K, 0, 0),
        Err(Error::KeyInUse)
    );
    assert_eq!(hal.storage, before);
    // A new key may start at 0 on the same storage.
    NonceStore::provision(&mut hal, 0, OTHER, 0, 0).unwrap();
}

#[test]
fn unprovisioned_or_misplaced_storage_is_refused() {
    let mut hal = TestHal::<64>::new(1);
    for base in [2, 48] {
        assert_eq!(
            NonceStore::open(&mut hal, base, RES, K, BlankStart::Floor(1)).err(),
            Some(Error::Storage)
        );
    }
}

#[test]
fn reserve_ahead_writes_once_per_reserve() {
    let mut hal = fresh();
    let mut s = open(&mut hal);
    for i in 1..=100u64 {
        assert_eq!(s.next_send(&mut hal).unwrap(), i);
    }
    // Marks at 16, 32, ..., 112: 7 writes.
    assert_eq!(s.writes(), 7);
    let mut again = hal.rebooted();
    let s2 = open(&mut again);
    assert_eq!(s2.nfs(), 112);
    assert_eq!(s2.peek_send(), 113);
}

#[test]
fn nlw_survives_reboot_and_rejects_replays() {
    let mut hal = fresh();
    let mut s = open(&mut hal);
    assert_eq!(s.accept_received(&mut hal, 5), Ok(true));
    assert_eq!(s.accept_received(&mut hal, 5), Ok(false));
    assert_eq!(s.accept_received(&mut hal, 4), Ok(false));
    assert_eq!(s.accept_received(&mut hal, 9), Ok(true));
    assert_eq!(s.writes(), 1);
    let mut again = hal.rebooted();
    let mut s2 = open(&mut again);
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
    let mut s = open(&mut hal);
    assert_eq!(s.raise_nfs(1000), Ok(true));
    assert_eq!(s.raise_nfs(10), Ok(false));
    assert_eq!(s.raise_nfs(MAX_NONCE + 1), Err(Error::ValueOutOfRange));
    assert_eq!(s.next_send(&mut hal), Ok(1001));
}

#[test]
fn a_blank_start_moves_a_margin_past_the_peers_value() {
    let mut hal = TestHal::<64>::new(1);
    let mut s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(100)).unwrap();
    assert_eq!(s.raise_nfs(5000), Ok(true));
    assert!((LOST_STATE_MARGIN..2 * LOST_STATE_MARGIN).contains(&s.margin()));
    assert_eq!(s.next_send(&mut hal), Ok(5000 + s.margin() + 1));
    // The margin stops at the top of the nonce space.
    let mut hal = TestHal::<64>::new(2);
    let mut s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(100)).unwrap();
    assert_eq!(s.raise_nfs(MAX_NONCE - 1), Ok(true));
    assert_eq!(s.nfs(), MAX_NONCE);
}

#[test]
fn the_blank_start_margin_is_taken_once() {
    let mut hal = TestHal::<64>::new(1);
    let mut s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(100)).unwrap();
    assert_eq!(s.raise_nfs(5000), Ok(true));
    let first = s.next_send(&mut hal).unwrap();
    assert_eq!(first, 5000 + s.margin() + 1);
    // Later "old nonce" answers name values of this start (a peer's NLW mark a
    // little ahead of what it accepted): no second margin, no 2^24 nonces burnt.
    assert_eq!(s.raise_nfs(first + 10), Ok(true));
    assert_eq!(s.next_send(&mut hal), Ok(first + 11));
}

#[test]
fn stores_that_know_the_same_value_land_apart() {
    // Two blank starts (the records deleted before each) both answered "old nonce
    // 5000", and the records deleted again, and made again by a third start,
    // between their reservations: neither can see the other's range.
    let mut hal = TestHal::<64>::new(1);
    let mut a = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(100)).unwrap();
    hal.storage = [0xff; 64];
    let mut b = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(101)).unwrap();
    assert_eq!((a.raise_nfs(5000), b.raise_nfs(5000)), (Ok(true), Ok(true)));
    let na = a.next_send(&mut hal).unwrap();
    hal.storage = [0xff; 64];
    NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(102)).unwrap();
    let nb = b.next_send(&mut hal).unwrap();
    assert!(
        na.abs_diff(nb) >= u64::from(RES),
        "ranges from {na} and {nb} overlap"
    );
    // Two stores that knew the same marks find the records lost twice: the second
    // one's rewrite lands away from the ranges taken above the first.
    let mut hal = fresh();
    let mut c = open(&mut hal);
    let mut d = open(&mut hal);
    hal.storage = [0xff; 64];
    let nc = c.next_send(&mut hal).unwrap();
    hal.storage = [0xff; 64];
    let nd = d.next_send(&mut hal).unwrap();
    assert!(nc >= LOST_STATE_MARGIN && nd >= LOST_STATE_MARGIN);
    assert!(
        nc.abs_diff(nd) >= u64::from(RES),
        "ranges from {nc} and {nd} overlap"
    );
}

#[test]
fn exhaustion_is_an_error() {
    let mut hal = TestHal::<64>::new(3);
    NonceStore::provision(&mut hal, 0, K, MAX_NONCE - 1, 0).unwrap();
    let mut s = open(&mut hal);
    assert_eq!(s.next_send(&mut hal), Ok(MAX_NONCE));
    assert_eq!(s.next_send(&mut hal), Err(Error::NonceExhausted));
}

/// Mark writes at the top of the nonce space with the largest reserve: a nonce
/// plus the reserve is summed without saturation (it cannot overflow) and the marks
/// stop at `MAX_NONCE`; a second store on the same records then finds no nonce left
/// to send, and a received `MAX_NONCE` is accepted once.
#[test]
fn mark_writes_with_the_largest_reserve_stop_at_max_nonce() {
    let mut hal = TestHal::<64>::new(3);
    NonceStore::provision(&mut hal, 0, K, MAX_NONCE - 10, MAX_NONCE - 10).unwrap();
    let mut a = NonceStore::open(&mut hal, 0, u32::MAX, K, BlankStart::Refuse).unwrap();
    let mut b = NonceStore::open(&mut hal, 0, u32::MAX, K, BlankStart::Refuse).unwrap();
    assert_eq!(a.next_send(&mut hal), Ok(MAX_NONCE - 9));
    assert_eq!(stored_marks(&mut hal), (MAX_NONCE, MAX_NONCE - 10));
    // A's range reaches MAX_NONCE: nothing is left above it for B.
    let before = hal.storage;
    assert_eq!(b.next_send(&mut hal), Err(Error::NonceExhausted));
    assert_eq!(hal.storage, before);
    for n in MAX_NONCE - 8..=MAX_NONCE {
        assert_eq!(a.next_send(&mut hal), Ok(n));
    }
    assert_eq!(a.next_send(&mut hal), Err(Error::NonceExhausted));
    assert_eq!(a.reserve_next(&mut hal), Err(Error::NonceExhausted));
    assert_eq!(b.accept_received(&mut hal, MAX_NONCE - 1), Ok(true));
    assert_eq!(stored_marks(&mut hal), (MAX_NONCE, MAX_NONCE));
    assert_eq!(b.accept_received(&mut hal, MAX_NONCE), Ok(true));
    assert_eq!(b.accept_received(&mut hal, MAX_NONCE), Ok(false));
}

/// A closed store (and one never opened) sends nothing, accepts nothing and
/// writes nothing, also on a checkpoint; the records stay as they were.
#[test]
fn a_closed_store_sends_accepts_and_writes_nothing() {
    let mut hal = fresh();
    let mut s = open(&mut hal);
    assert_eq!(s.next_send(&mut hal), Ok(1));
    assert_eq!(s.accept_received(&mut hal, 5), Ok(true));
    let (before, writes) = (hal.storage, hal.storage_writes);
    for mut s in [s, NonceStore::unopened()] {
        s.close();
        assert_eq!(s.next_send(&mut hal), Err(Error::NonceExhausted));
        assert_eq!(s.reserve_next(&mut hal), Err(Error::NonceExhausted));
        assert_eq!(s.accept_received(&mut hal, 6), Ok(false));
        assert_eq!(s.accept_received(&mut hal, MAX_NONCE), Ok(false));
        assert_eq!(s.raise_nfs(MAX_NONCE), Ok(false));
        assert_eq!(s.checkpoint(&mut hal), Ok(()));
    }
    let mut u = NonceStore::unopened();
    assert_eq!(u.next_send(&mut hal), Err(Error::NonceExhausted));
    assert_eq!(u.accept_received(&mut hal, 1), Ok(false));
    assert_eq!(u.checkpoint(&mut hal), Ok(()));
    assert_eq!((hal.storage, hal.storage_writes), (before, writes));
    assert!(!hal.locked);
}

#[test]
fn large_granularity_aligns_slots() {
    let mut hal = TestHal::<256>::new(3);
    hal.granularity = 32;
    assert_eq!(storage_len(32), 64);
    NonceStore::provision(&mut hal, 32, K, 7, 3).unwrap();
    let mut s = NonceStore::open(&mut hal, 32, RES, K, BlankStart::Refuse).unwrap();
    assert_eq!((s.nfs(), s.nlw()), (7, 3));
    s.next_send(&mut hal).unwrap();
    assert_eq!(
        NonceStore::open(&mut hal, 16, RES, K, BlankStart::Refuse).err(),
        Some(Error::Storage)
    );
    let mut again = hal.rebooted();
    let r = NonceStore::open(&mut again, 32, RES, K, BlankStart::Refuse).unwrap();
    assert_eq!(r.nfs(), 7 + RES as u64);
}

/// Slots longer than one write call (64-byte granules): each record is followed by
/// 0xFF up to its slot's end, and a reboot finds the marks.
#[test]
fn granules_longer_than_one_write() {
    let mut hal = TestHal::<256>::new(3);
    hal.granularity = 64;
    hal.storage.fill(0);
    NonceStore::provision(&mut hal, 0, K, 7, 3).unwrap();
    let mut s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Refuse).unwrap();
    assert_eq!(s.next_send(&mut hal), Ok(8));
    for slot in [0..64, 64..128] {
        let bytes = &hal.storage[slot];
        assert!(Record::decode(bytes[..RECORD_LEN].try_into().unwrap()).is_some());
        assert!(bytes[RECORD_LEN..].iter().all(|b| *b == 0xff), "{bytes:?}");
    }
    let mut again = hal.rebooted();
    let r = NonceStore::open(&mut again, 0, RES, K, BlankStart::Refuse).unwrap();
    assert_eq!(r.nfs(), 8 + RES as u64 - 1);
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
    let mut store = open(&mut hal);
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
                store = open(&mut hal);
                Ok(())
            }
        };
        if r.is_err() || hal.powered_off {
            assert!(hal.powered_off, "error without power cut: {r:?}");
            hal = hal.rebooted();
            store = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Refuse)
                .expect("a valid record survives");
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
        let mut s = NonceStore::open(&mut hal, 0, reserve, K, BlankStart::Refuse).unwrap();
        let before = hal.storage_writes;
        for _ in 0..1000 {
            s.next_send(&mut hal).unwrap();
        }
        assert_eq!(s.writes(), max_records);
        // A record is 20 bytes = 5 granules of 4 bytes.
        assert_eq!(hal.storage_writes - before, 5 * max_records);
        // The two slots share the wear.
        let max_granule = *hal.granule_writes[..10].iter().max().unwrap();
        assert!(u32::from(max_granule) <= max_records / 2 + 2);
    }
    // Request/response traffic: 1000 packets each way moves both marks.
    let mut hal = fresh();
    let mut s = NonceStore::open(&mut hal, 0, DEFAULT_RESERVE, K, BlankStart::Refuse).unwrap();
    for i in 1..=1000 {
        s.next_send(&mut hal).unwrap();
        assert_eq!(s.accept_received(&mut hal, i), Ok(true));
    }
    assert_eq!(s.writes(), 8);
}

#[test]
fn checkpoint_resumes_exactly_and_survives_a_cut_at_every_write() {
    // Without a power cut: the next instance starts at the exact values.
    let mut hal = fresh();
    let mut s = NonceStore::open(&mut hal, 0, 64, K, BlankStart::Refuse).unwrap();
    for _ in 0..5 {
        s.next_send(&mut hal).unwrap();
    }
    assert_eq!(s.accept_received(&mut hal, 9), Ok(true));
    s.checkpoint(&mut hal).unwrap();
    let mut t = NonceStore::open(&mut hal, 0, 64, K, BlankStart::Refuse).unwrap();
    assert_eq!((t.nfs(), t.nlw()), (5, 9));
    assert_eq!(t.next_send(&mut hal), Ok(6));
    // A second checkpoint with nothing new writes nothing.
    let w = hal.storage_writes;
    let mut u = NonceStore::open(&mut hal, 0, 64, K, BlankStart::Refuse).unwrap();
    u.checkpoint(&mut hal).unwrap();
    assert_eq!(hal.storage_writes, w);
    // A power cut at any granule of the checkpoint never lowers what was used.
    for cut in 0..10 {
        let mut hal = fresh();
        let mut s = NonceStore::open(&mut hal, 0, 64, K, BlankStart::Refuse).unwrap();
        for _ in 0..5 {
            s.next_send(&mut hal).unwrap();
        }
        hal.power_cut_after = Some(cut);
        let _ = s.checkpoint(&mut hal);
        let mut hal = hal.rebooted();
        let mut r = NonceStore::open(&mut hal, 0, 64, K, BlankStart::Refuse).unwrap();
        assert!(
            r.nfs() >= 5,
            "cut {cut}: NFS {} went below a used nonce",
            r.nfs()
        );
        assert!(r.next_send(&mut hal).unwrap() > 5);
    }
}

#[test]
fn two_stores_on_one_storage_take_disjoint_ranges() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    // Both opened at the same marks; each reservation re-reads the other's.
    assert_eq!(a.next_send(&mut hal), Ok(1));
    assert_eq!(b.next_send(&mut hal), Ok(17));
    assert_eq!(a.next_send(&mut hal), Ok(2));
    // "Old nonce" from the peer: A jumps to B's nonce; its next one is still its own
    // (inside A's range) or above every range.
    assert_eq!(a.raise_nfs(17), Ok(true));
    assert_eq!(a.next_send(&mut hal), Ok(33));
    // B checkpoints: someone (A) wrote since, so its marks stay.
    b.checkpoint(&mut hal).unwrap();
    assert_eq!(stored_marks(&mut hal).0, 48);
    // A checkpoints: its record is the newest, so it gives back its own tail.
    a.checkpoint(&mut hal).unwrap();
    assert_eq!(stored_marks(&mut hal).0, 33);
    // B's range (17..=32) is below A's exact NFS: nothing B holds is given away.
    assert_eq!(b.next_send(&mut hal), Ok(18));
    assert_eq!(hal.unlocked_writes, 0);
}

#[test]
fn a_reserved_next_nonce_is_the_one_sent() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    assert_eq!(b.next_send(&mut hal), Ok(1));
    // A's next nonce would lie in B's range: reserving it takes the next range.
    assert_eq!(a.peek_send(), 1);
    let n = a.reserve_next(&mut hal).unwrap();
    assert_eq!((n, a.peek_send()), (17, 17));
    assert_eq!(
        a.reserve_next(&mut hal),
        Ok(17),
        "a second call changes nothing"
    );
    // B goes on past its range meanwhile: A's reserved nonce stays A's.
    let mut bs: Vec<u64> = (0..RES).map(|_| b.next_send(&mut hal).unwrap()).collect();
    assert_eq!(a.next_send(&mut hal), Ok(n));
    bs.sort_unstable();
    assert!(
        bs.binary_search(&n).is_err(),
        "B used A's reserved nonce {n}"
    );
}

#[test]
fn a_checkpoint_keeps_the_receive_marks_of_others() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    assert_eq!(b.accept_received(&mut hal, 100), Ok(true));
    // A writes after B: its record carries B's NLW mark.
    a.next_send(&mut hal).unwrap();
    assert_eq!(a.accept_received(&mut hal, 50), Ok(true));
    a.checkpoint(&mut hal).unwrap();
    // A's exact NLW is 50, but B accepted 100: a restart must not accept 100 again.
    let mut hal2 = hal.rebooted();
    let mut c = open(&mut hal2);
    assert_eq!(c.accept_received(&mut hal2, 100), Ok(false));
}

#[test]
fn records_lost_while_running_are_written_again_above_every_mark() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    for _ in 0..3 {
        a.next_send(&mut hal).unwrap();
    }
    let b_first = b.next_send(&mut hal).unwrap();
    // The file is deleted / the storage wiped while both run.
    hal.storage = [0xff; 64];
    // A's next reservation finds nothing: it rewrites the records above its own
    // marks with a margin that covers B's range.
    for _ in 0..RES {
        a.next_send(&mut hal).unwrap();
    }
    let (nfs_mark, nlw_mark) = stored_marks(&mut hal);
    assert!(nfs_mark > b_first + u64::from(RES) && nlw_mark >= LOST_STATE_MARGIN);
    // A newcomer starts above everything either holds.
    let mut c = open(&mut hal);
    assert!(c.next_send(&mut hal).unwrap() > b_first + u64::from(RES));
}

#[test]
fn records_lost_then_rewritten_by_a_receive_still_cover_what_others_accepted() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    // A accepts 500 (its NLW mark covers it); B, further behind, is at 0.
    assert_eq!(a.accept_received(&mut hal, 500), Ok(true));
    assert!(stored_marks(&mut hal).1 >= 500);
    // The file is deleted / the storage wiped while both run.
    hal.storage = [0xff; 64];
    // B's receive is the first write after the loss: it writes the records again.
    assert_eq!(b.accept_received(&mut hal, 300), Ok(true));
    // They cover what A accepted before the loss, as a send's write would (the
    // margin above what B knows): a newcomer does not accept A's 500 again.
    let (nfs_mark, nlw_mark) = stored_marks(&mut hal);
    assert!(nfs_mark >= LOST_STATE_MARGIN, "NFS mark {nfs_mark}");
    assert!(nlw_mark >= LOST_STATE_MARGIN, "NLW mark {nlw_mark}");
    let mut c = open(&mut hal);
    assert_eq!(c.accept_received(&mut hal, 500), Ok(false));
}

/// What several stores on one storage may do, in any order.
#[derive(Debug, Clone, Copy)]
enum Op {
    Send(usize),
    Recv(usize, u64),
    Raise(usize, u64),
    Checkpoint(usize),
    Restart(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize).prop_map(Op::Send),
        2 => (0..3usize, 1..400u64).prop_map(|(i, n)| Op::Recv(i, n)),
        1 => (0..3usize, 1..400u64).prop_map(|(i, v)| Op::Raise(i, v)),
        1 => (0..3usize).prop_map(Op::Checkpoint),
        1 => (0..3usize).prop_map(Op::Restart),
    ]
}

proptest! {
    /// Three stores on one storage, interleaved in any order: no nonce is handed out
    /// twice, and storage always covers every nonce handed out and every nonce
    /// accepted, so a store opened at any moment can reuse or re-accept none.
    #[test]
    fn interleaved_stores_never_reuse_and_storage_covers_all(
        ops in proptest::collection::vec(op(), 1..200)
    ) {
        let mut hal = fresh();
        let mut stores: Vec<NonceStore> = (0..3).map(|_| open(&mut hal)).collect();
        let mut sent = HashSet::new();
        let (mut max_sent, mut max_accepted) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Send(i) => {
                    let n = stores[i].next_send(&mut hal).unwrap();
                    prop_assert!(sent.insert(n), "nonce {} handed out twice", n);
                    prop_assert!(n < LOST_STATE_MARGIN, "records taken for lost: {}", n);
                    max_sent = max_sent.max(n);
                }
                Op::Recv(i, n) => {
                    if stores[i].accept_received(&mut hal, n).unwrap() {
                        max_accepted = max_accepted.max(n);
                    }
                }
                Op::Raise(i, v) => {
                    stores[i].raise_nfs(v).unwrap();
                }
                Op::Checkpoint(i) => stores[i].checkpoint(&mut hal).unwrap(),
                Op::Restart(i) => stores[i] = open(&mut hal),
            }
            let (nfs_mark, nlw_mark) = stored_marks(&mut hal);
            prop_assert!(nfs_mark >= max_sent, "stored NFS mark {} below sent {}", nfs_mark, max_sent);
            prop_assert!(nlw_mark >= max_accepted, "stored NLW mark {} below accepted {}", nlw_mark, max_accepted);
        }
        prop_assert_eq!(hal.unlocked_writes, 0);
    }
}

#[test]
fn a_store_that_never_wrote_still_notices_lost_records() {
    // A opens (reads the records, writes nothing); B reserves and uses a range.
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    let used: Vec<u64> = (0..3).map(|_| b.next_send(&mut hal).unwrap()).collect();
    // The file is deleted / the storage wiped while both run.
    hal.storage = [0xff; 64];
    // A's first reservation finds nothing: the records are lost, not new, and B may
    // go on using the rest of its range.
    let n = a.next_send(&mut hal).unwrap();
    assert!(
        n > used[0] + u64::from(RES),
        "A's first nonce {n} lies in B's range from {}",
        used[0]
    );
    for _ in 0..RES {
        let m = b.next_send(&mut hal).unwrap();
        assert_ne!(m, n, "nonce {m} used by both stores");
    }
}

#[test]
fn records_made_again_below_what_a_store_wrote_count_as_lost() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    assert_eq!(a.next_send(&mut hal), Ok(1));
    let nb = b.next_send(&mut hal).unwrap();
    assert_eq!(nb, 17);
    // The file is deleted and a newcomer starts blank, at a floor below these
    // marks (they ran ahead of the clock): the records are there, but they are not
    // the ones A and B reserved from.
    hal.storage = [0xff; 64];
    NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(5)).unwrap();
    // A is told "old nonce 16" and reserves past its range.
    assert_eq!(a.raise_nfs(16), Ok(true));
    let na = a.next_send(&mut hal).unwrap();
    assert!(
        na > nb + u64::from(RES),
        "A's nonce {na} lies in B's range from {nb}"
    );
}

#[test]
fn a_checkpoint_after_lost_records_keeps_the_margin() {
    let mut hal = fresh();
    let mut a = open(&mut hal);
    let mut b = open(&mut hal);
    let used = b.next_send(&mut hal).unwrap();
    hal.storage = [0xff; 64];
    // A receives first: it finds the records gone and writes them again above its
    // marks with the margin, which covers B's range.
    assert_eq!(a.accept_received(&mut hal, 5), Ok(true));
    assert!(stored_marks(&mut hal).0 >= LOST_STATE_MARGIN);
    // A stops cleanly: its checkpoint gives back its own reservation, not the margin.
    a.checkpoint(&mut hal).unwrap();
    let (nfs_mark, _) = stored_marks(&mut hal);
    assert!(
        nfs_mark >= LOST_STATE_MARGIN,
        "the checkpoint lowered the NFS mark to {nfs_mark}, below B's range from {used}"
    );
    let mut c = open(&mut hal);
    assert!(c.next_send(&mut hal).unwrap() > used + u64::from(RES));
}

/// What the power does to shared storage, besides what the stores do.
#[derive(Debug, Clone, Copy)]
enum Hard {
    Op(Op),
    /// The power fails after this many more granule writes; every store restarts.
    Cut(u32),
}

fn hard_op() -> impl Strategy<Value = Hard> {
    prop_oneof![
        12 => op().prop_map(Hard::Op),
        1 => (0..12u32).prop_map(Hard::Cut),
    ]
}

/// The blank start of the model's stores: the port's floor, which is above every
/// nonce used or reserved so far (what the host's wall clock promises, see
/// `docs/security.md`).
fn model_floor(stores: &[NonceStore], sent: &HashSet<u64>) -> u64 {
    let held = stores.iter().map(|s| s.nfs.max(s.nfs_mark)).max();
    held.into_iter()
        .chain(sent.iter().copied())
        .max()
        .unwrap_or(0)
        + 1
}

proptest! {
    /// Three stores on one storage, interleaved in any order, the power cut at any
    /// write and the records erased once (the file deleted, the flash wiped) while
    /// they run: no nonce is ever handed out twice. Stores that start again after
    /// the erase start blank, at a floor above everything used or reserved.
    #[test]
    fn stores_with_a_wipe_and_power_cuts_never_reuse(
        ops in proptest::collection::vec(hard_op(), 1..200),
        wipe_at in proptest::option::of(0..200usize),
    ) {
        let mut hal = fresh();
        let mut stores: Vec<NonceStore> = (0..3).map(|_| open(&mut hal)).collect();
        let mut sent = HashSet::new();
        for (step, h) in ops.into_iter().enumerate() {
            if wipe_at == Some(step) {
                hal.storage = [0xff; 64];
            }
            let blank = BlankStart::Floor(model_floor(&stores, &sent));
            let r = match h {
                Hard::Cut(k) => {
                    hal.power_cut_after = Some(k);
                    Ok(())
                }
                Hard::Op(Op::Send(i)) => stores[i].next_send(&mut hal).map(|n| {
                    assert!(sent.insert(n), "nonce {n} handed out twice");
                }),
                Hard::Op(Op::Recv(i, n)) => stores[i].accept_received(&mut hal, n).map(|_| ()),
                Hard::Op(Op::Raise(i, v)) => stores[i].raise_nfs(v).map(|_| ()),
                Hard::Op(Op::Checkpoint(i)) => stores[i].checkpoint(&mut hal),
                Hard::Op(Op::Restart(i)) => {
                    NonceStore::open(&mut hal, 0, RES, K, blank).map(|s| stores[i] = s)
                }
            };
            if hal.powered_off {
                hal = hal.rebooted();
                let floor = model_floor(&stores, &sent);
                for s in stores.iter_mut() {
                    *s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(floor))
                        .expect("opens after a power cut");
                }
            } else {
                prop_assert!(r.is_ok(), "{:?} without a power cut", r);
            }
        }
        prop_assert_eq!(hal.unlocked_writes, 0);
    }
}

#[test]
fn clock_floor_counts_32_per_millisecond_from_2024_and_refuses_outside() {
    // 2024-01-01T00:00:00Z is 0; one millisecond later, 32.
    assert_eq!(clock_floor(FLOOR_EPOCH_MS), Some(0));
    assert_eq!(clock_floor(FLOOR_EPOCH_MS + 1), Some(32));
    // 2026-12-01T00:00:00Z read in whole seconds (ARM semihosting SYS_TIME).
    let secs: u64 = 1_796_083_200;
    assert_eq!(
        clock_floor(secs * 1000),
        Some((secs * 1000 - FLOOR_EPOCH_MS) * 32)
    );
    // 2093-09-01 is still below the random region; 2094-01-01 is refused, as are a
    // clock before 2024 and one that overflows.
    assert!(clock_floor(3_902_601_600_000).is_some_and(|f| f < RANDOM_START));
    assert_eq!(clock_floor(3_913_142_400_000), None);
    assert_eq!(clock_floor(FLOOR_EPOCH_MS - 1), None);
    assert_eq!(clock_floor(0), None);
    assert_eq!(clock_floor(u64::MAX), None);
    // The last floor below RANDOM_START is accepted, the first one at it is not.
    let last = FLOOR_EPOCH_MS + (RANDOM_START >> FLOOR_SHIFT) - 1;
    assert_eq!(clock_floor(last), Some(RANDOM_START - 32));
    assert_eq!(clock_floor(last + 1), None);
}

#[test]
fn a_floor_start_begins_both_counters_at_the_floor() {
    let mut hal = TestHal::<64>::new(1);
    let f = clock_floor(1_796_083_200_000).unwrap();
    let s = NonceStore::open(&mut hal, 0, RES, K, BlankStart::Floor(f)).unwrap();
    assert!(s.started_blank());
    assert_eq!((s.nfs(), s.nlw()), (f, f));
}
