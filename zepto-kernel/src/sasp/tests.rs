use super::*;
use crate::heap::HeapMem;
use crate::nonce_store::{BlankStart, KeyId, NonceStore};
use crate::testhal::TestHal;
use aes::Aes128;
use proptest::prelude::*;
use std::collections::HashSet;

type TH = HeapMem<2048, 4>;
type Hal = TestHal<64>;

const KEY: [u8; 16] = *b"zepto-test-key!!";
const KID: KeyId = *b"test";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn end<C: SaspCipher>(role: Role, nfs: u64, nlw: u64) -> (Sasp<C>, Hal) {
    let mut hal = Hal::new(if role == Role::Device { 11 } else { 22 });
    NonceStore::provision(&mut hal, 0, KID, nfs, nlw).unwrap();
    let store = NonceStore::open(&mut hal, 0, 16, KID, BlankStart::Refuse).unwrap();
    (Sasp::new(&KEY, role, store).unwrap(), hal)
}

/// Runs `send` on `payload`, returns the packet.
fn send<C: SaspCipher>(s: &mut Sasp<C>, hal: &mut Hal, payload: &[u8]) -> Vec<u8> {
    send_padded(s, hal, payload, None)
}

fn send_padded<C: SaspCipher>(
    s: &mut Sasp<C>,
    hal: &mut Hal,
    payload: &[u8],
    pad_to: Option<usize>,
) -> Vec<u8> {
    let mut heap_mem = TH::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, payload).unwrap();
    assert_eq!(
        s.send_padded(&mut heap, h, hal, pad_to),
        Ok(HandlerOutcome::Pass)
    );
    heap.reply(h).unwrap().to_vec()
}

/// Runs `receive` on `packet`, returns the outcome and the reply.
fn recv<C: SaspCipher>(s: &mut Sasp<C>, hal: &mut Hal, packet: &[u8]) -> (HandlerOutcome, Vec<u8>) {
    let mut heap_mem = TH::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, packet).unwrap();
    let out = s
        .receive(&mut heap, h, hal)
        .map_err(|e| (e, packet.len()))
        .unwrap();
    (out, heap.reply(h).unwrap().to_vec())
}

/// Decrypts a packet with the `eax` crate directly (independent of `Sasp`).
fn raw_open(packet: &[u8], sender_flag: u8) -> Vec<u8> {
    use ::eax::aead::AeadInOut;
    use ::eax::aead::KeyInit;
    use ::eax::{Nonce, Tag};
    use aes09::cipher::consts::U16;
    let aead = ::eax::Eax::<aes09::Aes128>::new_from_slice(&KEY).unwrap();
    let mut nonce = [0u8; 16];
    nonce[..6].copy_from_slice(&packet[..6]);
    nonce[6] = sender_flag;
    let mut due = packet[22..].to_vec();
    let tag = Tag::<U16>::try_from(&packet[6..22]).unwrap();
    aead.decrypt_inout_detached(
        &Nonce::<U16>::from(nonce),
        &[],
        due.as_mut_slice().into(),
        &tag,
    )
    .unwrap();
    due
}

#[test]
fn header_layout_is_byte_exact() {
    assert_eq!(header(1, false), [1, 0, 0, 0, 0, 0]);
    assert_eq!(
        header(0x0000_1122_3344_5566, false),
        [0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    assert_eq!(
        header(MAX_NONCE, false),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
    );
    assert_eq!(header(MAX_NONCE, true), [0xff; 6]);
    assert_eq!(header(0x0102, true), [0x02, 0x01, 0, 0, 0, 0x80]);
    assert_eq!(parse_header(&[0x02, 0x01, 0, 0, 0, 0x80]), (0x0102, true));
    assert_eq!(parse_header(&[0xff; 6]), (MAX_NONCE, true));
    assert_eq!(packet_id(5, 1), [5, 0, 0, 0, 0, 0x80]);
    assert_eq!(packet_id(5, 0), [5, 0, 0, 0, 0, 0]);
    assert_eq!(
        eax_nonce(&[1, 2, 3, 4, 5, 0x86], 1),
        [1, 2, 3, 4, 5, 0x86, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(due_len(1), 16);
    assert_eq!(due_len(15), 16);
    assert_eq!(due_len(16), 16);
    assert_eq!(due_len(17), 32);
    assert_eq!(packet_len(16), 38);
    assert_eq!(packet_len(32), 54);
}

/// The AES-128 test vectors of the EAX paper (Bellare, Rogaway, Wagner, Appendix),
/// run through `eax_seal` / `eax_open` (`Eax`, which the host's decoder uses) and
/// through `EaxKey`, what SASP encrypts with.
#[test]
fn eax_paper_vectors() {
    let vectors = [
        (
            "",
            "233952DEE4D5ED5F9B9C6D6FF80FF478",
            "62EC67F9C3A4A407FCB2A8C49031A8B3",
            "6BFB914FD07EAE6B",
            "E037830E8389F27B025A2D6527E79D01",
        ),
        (
            "F7FB",
            "91945D3F4DCBEE0BF45EF52255F095A4",
            "BECAF043B0A23D843194BA972C66DEBD",
            "FA3BFD4806EB53FA",
            "19DD5C4C9331049D0BDAB0277408F67967E5",
        ),
        (
            "1A47CB4933",
            "01F74AD64077F2E704C0F60ADA3DD523",
            "70C3DB4F0D26368400A10ED05D2BFF5E",
            "234A3463C1264AC6",
            "D851D5BAE03A59F238A23E39199DC9266626C40F80",
        ),
        (
            "481C9E39B1",
            "D07CF6CBB7F313BDDE66B727AFD3C5E8",
            "8408DFFF3C1A2B1292DC199E46B7D617",
            "33CCE2EABFF5A79D",
            "632A9D131AD4C168A4225D8E1FF755939974A7BEDE",
        ),
        (
            "40D0C07DA5E4",
            "35B6D0580005BBC12B0587124557D2C2",
            "FDB6B06676EEDC5C61D74276E1F8E816",
            "AEB96EAEBE2970E9",
            "071DFE16C675CB0677E536F73AFE6A14B74EE49844DD",
        ),
        (
            "4DE3B35C3FC039245BD1FB7D",
            "BD8E6E11475E60B268784C38C62FEB22",
            "6EAC5C93072D8E8513F750935E46DA1B",
            "D4482D1CA78DCE0F",
            "835BB4F15D743E350E728414ABB8644FD6CCB86947C5E10590210A4F",
        ),
        (
            "8B0A79306C9CE7ED99DAE4F87F8DD61636",
            "7C77D6E813BED5AC98BAA417477A2E7D",
            "1A8C98DCD73D38393B2BF1569DEEFC19",
            "65D2017990D62528",
            "02083E3979DA014812F59F11D52630DA30137327D10649B0AA6E1C181DB617D7F2",
        ),
        (
            "1BDA122BCE8A8DBAF1877D962B8592DD2D56",
            "5FFF20CAFAB119CA2FC73549E20F5B0D",
            "DDE59B97D722156D4D9AFF2BC7559826",
            "54B9F04E6A09189A",
            "2EC47B2C4954A489AFC7BA4897EDCDAE8CC33B60450599BD02C96382902AEF7F832A",
        ),
        (
            "6CF36720872B8513F6EAB1A8A44438D5EF11",
            "A4A4782BCFFD3EC5E7EF6D8C34A56123",
            "B781FCF2F75FA5A8DE97A9CA48E522EC",
            "899A175897561D7E",
            "0DE18FD0FDD91E7AF19F1D8EE8733938B1E8E7F6D2231618102FDB7FE55FF1991700",
        ),
        (
            "CA40D7446E545FFAED3BD12A740A659FFBBB3CEAB7",
            "8395FCF1E95BEBD697BD010BC766AAC3",
            "22E7ADD93CFC6393C57EC0B3C17D6B44",
            "126735FCC320D25A",
            "CB8920F87A6C75CFF39627B56E3ED197C552D295A7CFC46AFC253B4652B1AF3795B124AB6E",
        ),
    ];
    for (msg, key, nonce, aad, cipher) in vectors {
        let (msg, key, aad, cipher) = (hex(msg), hex(key), hex(aad), hex(cipher));
        let nonce: [u8; 16] = hex(nonce).try_into().unwrap();
        let aead = Eax::<Aes128>::new_from_slice(&key).unwrap();
        let mut buf = msg.clone();
        let tag = eax_seal(&aead, &nonce, &aad, &mut buf).unwrap();
        let (ct, expected_tag) = cipher.split_at(msg.len());
        assert_eq!(buf, ct);
        assert_eq!(tag.as_slice(), expected_tag);
        eax_open(&aead, &nonce, &aad, &mut buf, &tag).unwrap();
        assert_eq!(buf, msg);
        let mut bad = tag;
        bad[15] ^= 1;
        let mut buf2 = ct.to_vec();
        assert_eq!(
            eax_open(&aead, &nonce, &aad, &mut buf2, &bad),
            Err(Error::AuthenticationFailed)
        );
        assert_eq!(buf2, ct, "a failed open leaves the buffer unchanged");
        // The same through `EaxKey`, which SASP keeps (the key expanded per message).
        let k = crate::eax::EaxKey::<Aes128>::new(&key.clone().try_into().unwrap());
        let mut buf = msg.clone();
        let mut tag = [0u8; 16];
        k.seal_to(&nonce, &aad, &mut buf, &mut tag);
        assert_eq!((buf.as_slice(), tag.as_slice()), (ct, expected_tag));
        assert_eq!(
            k.open(&nonce, &aad, &mut buf2, &bad),
            Err(Error::AuthenticationFailed)
        );
        assert_eq!(buf2, ct);
        assert_eq!(
            k.open(&nonce, &aad, &mut buf, &tag[..15]),
            Err(Error::AuthenticationFailed)
        );
        assert_eq!(buf, ct);
        assert_eq!(k.open(&nonce, &aad, &mut buf, &tag), Ok(()));
        assert_eq!(buf, msg);
    }
}

#[test]
fn sent_packet_is_byte_exact() {
    let (mut dev, mut hal) = end::<Aes128>(Role::Device, 0, 0);
    let pkt = send(&mut dev, &mut hal, &[0x05, 0xaa, 0xbb]);
    assert_eq!(pkt.len(), 38);
    assert_eq!(&pkt[..6], &[1, 0, 0, 0, 0, 0]);
    let due = raw_open(&pkt, 0);
    // First byte with the padding flag, complementary size 13 (1 size byte + 12
    // padding bytes), the bytes, 12 padding bytes.
    assert_eq!(&due[..4], &[0x85, 13, 0xaa, 0xbb]);
    assert_eq!(due.len(), 16);

    // A whole block needs no padding: the data under encryption is the payload.
    let payload: Vec<u8> = (0..16).collect();
    let pkt = send(&mut dev, &mut hal, &payload);
    assert_eq!(&pkt[..6], &[2, 0, 0, 0, 0, 0]);
    assert_eq!(raw_open(&pkt, 0), payload);

    // 15 bytes: size field 1, no padding bytes.
    let payload: Vec<u8> = (1..16).collect();
    let pkt = send(&mut dev, &mut hal, &payload);
    let due = raw_open(&pkt, 0);
    assert_eq!(due[0], 0x81);
    assert_eq!(due[1], 1);
    assert_eq!(&due[2..], &payload[1..]);

    // The client sets its peer-distinguishing flag in the EAX nonce.
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    let pkt = send(&mut cli, &mut chal, &[0x7f]);
    assert_eq!(&pkt[..6], &[1, 0, 0, 0, 0, 0]);
    assert_eq!(&raw_open(&pkt, 1)[..2], &[0xff, 15]);
}

/// SASP padding is random (sasp.rst 5.2), not the zero bytes the packet's room
/// is taken with: in a payload's packet, in an enforced-padded one and in an "old
/// nonce" message.
#[test]
fn padding_bytes_are_random() {
    let (mut dev, mut hal) = end::<Aes128>(Role::Device, 0, 0);
    let pads: Vec<Vec<u8>> = (0..2)
        .map(|_| raw_open(&send(&mut dev, &mut hal, &[0x05, 0xaa, 0xbb]), 0)[4..].to_vec())
        .collect();
    assert_eq!(pads[0].len(), 12);
    assert_ne!(pads[0], pads[1]);
    assert!(pads
        .iter()
        .all(|p| p.iter().filter(|b| **b == 0).count() < 4));
    // Enforced padding: 2-byte size field, 205 padding bytes.
    let due = raw_open(&send_padded(&mut dev, &mut hal, &[1], Some(200)), 0);
    assert_eq!(due.len(), 208);
    assert!(due[3..].iter().filter(|b| **b == 0).count() < 8);
    // The "old nonce" message (built from bytes, not from a request).
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    let p = send(&mut cli, &mut chal, &[0x11, 1]);
    assert_eq!(recv(&mut dev, &mut hal, &p).0, HandlerOutcome::Pass);
    let (out, msg) = recv(&mut dev, &mut hal, &p);
    assert_eq!(out, HandlerOutcome::ReplyDown);
    let due = raw_open(&msg, 0);
    assert_eq!(&due[..2], &[0x81, 9]);
    assert!(due[8..].iter().filter(|b| **b == 0).count() < 3);
}

#[test]
fn both_directions_use_different_nonces() {
    // Same VP, same payload from both ends: different ciphertexts and tags.
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    dhal.granularity = 4;
    let a = send(&mut dev, &mut dhal, &[1; 16]);
    let b = send(&mut cli, &mut chal, &[1; 16]);
    assert_eq!(a[..6], b[..6]);
    assert_ne!(a[6..], b[6..]);
    // A packet reflected back to its sender does not authenticate.
    let (out, rep) = recv(&mut dev, &mut dhal, &a);
    assert_eq!(out, HandlerOutcome::IgnorePacket);
    assert!(rep.is_empty());
    assert_eq!(dev.stats().auth_failures, 1);
}

fn round_trips<C: SaspCipher>() {
    let (mut dev, mut dhal) = end::<C>(Role::Device, 0, 0);
    let (mut cli, mut chal) = end::<C>(Role::Client, 0, 0);
    for len in 1..70usize {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8 & 0x7f).collect();
        let pkt = send(&mut cli, &mut chal, &payload);
        assert_eq!(pkt.len(), packet_len(len));
        assert_eq!((pkt.len() - OVERHEAD) % BLOCK_LEN, 0);
        assert_eq!(
            recv(&mut dev, &mut dhal, &pkt),
            (HandlerOutcome::Pass, payload.clone())
        );
        assert_eq!(dev.last_received_nonce(), Some(len as u64));
        assert_eq!(dev.last_received_pid(), Some(packet_id(len as u64, 1)));
        let pkt = send(&mut dev, &mut dhal, &payload);
        assert_eq!(
            recv(&mut cli, &mut chal, &pkt),
            (HandlerOutcome::Pass, payload)
        );
    }
    assert_eq!(dev.stats(), &SaspStats::default());
}

#[test]
fn round_trip_aes() {
    round_trips::<Aes128>();
}

#[cfg(feature = "speck")]
#[test]
fn round_trip_speck() {
    round_trips::<speck_cipher::Speck128_128>();
}

#[cfg(feature = "speck")]
#[test]
fn speck_and_aes_packets_differ() {
    let (mut a, mut ah) = end::<Aes128>(Role::Device, 0, 0);
    let (mut s, mut sh) = end::<speck_cipher::Speck128_128>(Role::Device, 0, 0);
    let pa = send(&mut a, &mut ah, &[3; 16]);
    let ps = send(&mut s, &mut sh, &[3; 16]);
    assert_eq!(pa[..6], ps[..6]);
    assert_ne!(pa[6..], ps[6..]);
    let (mut c, mut ch) = end::<Aes128>(Role::Client, 0, 0);
    assert_eq!(recv(&mut c, &mut ch, &ps).0, HandlerOutcome::IgnorePacket);
}

#[test]
fn default_cipher_round_trip() {
    round_trips::<DefaultCipher>();
}

#[test]
fn replay_is_rejected_with_old_nonce_message() {
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    let p1 = send(&mut cli, &mut chal, &[0x11, 1]);
    let p2 = send(&mut cli, &mut chal, &[0x12, 2]);
    assert_eq!(recv(&mut dev, &mut dhal, &p1).0, HandlerOutcome::Pass);
    assert_eq!(recv(&mut dev, &mut dhal, &p2).0, HandlerOutcome::Pass);
    let nlw = dev.nonces().nlw();
    // Replaying either packet is not passed up; SASP answers "old nonce".
    for p in [&p1, &p2] {
        let (out, msg) = recv(&mut dev, &mut dhal, p);
        assert_eq!(out, HandlerOutcome::ReplyDown);
        assert_eq!(msg.len(), 38);
        assert_eq!(msg[5] & 0x80, 0x80, "destination flag: SASP");
        let due = raw_open(&msg, 0);
        // Type 1 with padding flag, size 9 (1 + 8 padding), NLW (2) in 6 bytes.
        assert_eq!(&due[..8], &[0x81, 9, 2, 0, 0, 0, 0, 0]);
        assert_eq!(dev.nonces().nlw(), nlw);
        // The client takes the message, raises nothing (its NFS is already 2).
        assert_eq!(
            recv(&mut cli, &mut chal, &msg),
            (HandlerOutcome::IgnorePacket, vec![])
        );
    }
    assert_eq!(dev.stats().old_nonce_replies, 2);
    assert_eq!(cli.stats().old_nonce_received, 2);
    assert_eq!(cli.stats().resyncs, 0);
}

#[test]
fn old_nonce_resynchronises_the_sender() {
    // The device has seen nonces up to 1000 (e.g. the client lost its state).
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 1000);
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    let p = send(&mut cli, &mut chal, &[0x22, 9, 9]);
    let (out, msg) = recv(&mut dev, &mut dhal, &p);
    assert_eq!(out, HandlerOutcome::ReplyDown);
    assert_eq!(
        recv(&mut cli, &mut chal, &msg).0,
        HandlerOutcome::IgnorePacket
    );
    assert_eq!(cli.stats().resyncs, 1);
    assert_eq!(cli.next_send_nonce(), 1001);
    let p = send(&mut cli, &mut chal, &[0x22, 9, 9]);
    assert_eq!(
        recv(&mut dev, &mut dhal, &p),
        (HandlerOutcome::Pass, vec![0x22, 9, 9])
    );
    // A replayed "old nonce" message never lowers NFS.
    assert_eq!(
        recv(&mut cli, &mut chal, &msg).0,
        HandlerOutcome::IgnorePacket
    );
    assert_eq!(cli.next_send_nonce(), 1002);
}

#[test]
fn tampered_byte_is_dropped_without_state_change() {
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    let p = send(
        &mut cli,
        &mut chal,
        &[0x33, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    );
    let storage_before = dhal.storage;
    for i in 0..p.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = p.clone();
            t[i] ^= bit;
            let (out, rep) = recv(&mut dev, &mut dhal, &t);
            assert_eq!(out, HandlerOutcome::IgnorePacket, "byte {i}");
            assert!(rep.is_empty());
            assert_eq!(dev.nonces().nlw(), 0);
            assert_eq!(dev.nonces().nfs(), 0);
        }
    }
    assert_eq!(dev.stats().auth_failures as usize, 2 * p.len());
    assert_eq!(dhal.storage, storage_before);
    assert!(dhal.tx.is_empty());
    // Truncated and too-short packets are dropped too.
    assert_eq!(
        recv(&mut dev, &mut dhal, &p[..p.len() - 1]).0,
        HandlerOutcome::IgnorePacket
    );
    assert_eq!(
        recv(&mut dev, &mut dhal, &p[..22]).0,
        HandlerOutcome::IgnorePacket
    );
    assert_eq!(
        recv(&mut dev, &mut dhal, &[]).0,
        HandlerOutcome::IgnorePacket
    );
    // Up to 22 bytes (header and tag, no data) are malformed; 23 bytes are
    // checked, and fail, as any packet.
    assert_eq!(dev.stats().malformed, 2);
    assert_eq!(
        recv(&mut dev, &mut dhal, &p[..23]).0,
        HandlerOutcome::IgnorePacket
    );
    assert_eq!(dev.stats().malformed, 2);
    assert_eq!(dev.stats().auth_failures as usize, 2 * p.len() + 2);
    // The untouched packet still goes through.
    assert_eq!(recv(&mut dev, &mut dhal, &p).0, HandlerOutcome::Pass);
}

#[test]
fn enforced_padding_hides_length() {
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    for pad_to in [16usize, 40, 200, 500] {
        for len in [1usize, 2, 15, 16, 17, 40]
            .into_iter()
            .filter(|l| *l <= pad_to)
        {
            let payload: Vec<u8> = (0..len).map(|i| i as u8 & 0x3f).collect();
            let pkt = send_padded(&mut cli, &mut chal, &payload, Some(pad_to));
            assert_eq!(pkt.len(), packet_len(pad_to), "len {len} pad_to {pad_to}");
            assert_eq!(
                recv(&mut dev, &mut dhal, &pkt),
                (HandlerOutcome::Pass, payload)
            );
        }
    }
    // A 2-byte size field (complementary size >= 128).
    let pkt = send_padded(&mut cli, &mut chal, &[1], Some(200));
    let due = raw_open(&pkt, 1);
    assert_eq!(due[0], 0x81);
    assert_eq!(encoding::decode_uint(&due[1..], 2).unwrap(), (208 - 1, 2));
    // pad_to below the payload is refused before any nonce is used.
    let mut heap_mem = TH::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, &[1, 2, 3]).unwrap();
    let nfs = cli.nonces().nfs();
    assert_eq!(
        cli.send_padded(&mut heap, h, &mut chal, Some(2)),
        Err(Error::ValueOutOfRange)
    );
    assert_eq!(cli.nonces().nfs(), nfs);
}

#[test]
fn invalid_payloads_are_refused() {
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let mut heap_mem = TH::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    for bad in [&[][..], &[0x80][..], &[0xff, 1][..]] {
        heap.set_request(h, bad).unwrap();
        assert_eq!(
            dev.send(&mut heap, h, &mut dhal),
            Err(Error::ValueOutOfRange)
        );
        assert!(heap.reply(h).unwrap().is_empty());
    }
    assert_eq!(dev.nonces().nfs(), 0);
}

#[test]
fn malformed_inner_layout_is_dropped() {
    // Authentic packets (built with the same key) whose inner layout is wrong.
    let aead = Eax::<Aes128>::new_from_slice(&KEY).unwrap();
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let cases: [(u64, bool, Vec<u8>); 4] = [
        // Complementary size larger than the data.
        (1, false, {
            let mut d = vec![0x80u8, 100];
            d.resize(16, 0);
            d
        }),
        // Complementary size 0 (below its own length).
        (2, false, {
            let mut d = vec![0x80u8, 0];
            d.resize(16, 0);
            d
        }),
        // SASP message of unknown type.
        (3, true, vec![0x05; 16]),
        // Old nonce message with a value above 47 bits.
        (4, true, {
            let mut d = vec![0x81u8, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
            d.resize(16, 0);
            d
        }),
    ];
    for (vp, to_sasp, mut due) in cases {
        let hdr = header(vp, to_sasp);
        let tag = eax_seal(&aead, &eax_nonce(&hdr, 1), &[], &mut due).unwrap();
        let pkt = [&hdr[..], &tag[..], &due[..]].concat();
        assert_eq!(
            recv(&mut dev, &mut dhal, &pkt),
            (HandlerOutcome::IgnorePacket, vec![])
        );
    }
    assert_eq!(dev.stats().malformed, 4);
    assert_eq!(dev.stats().auth_failures, 0);
    assert_eq!(dev.nonces().nlw(), 0);
    assert_eq!(dev.nonces().nfs(), 0);
}

/// Sends packets with the power failing at every storage write in turn; after each
/// cut the device reboots, reopens its nonces and goes on. No header (nonce) may
/// ever appear twice.
#[test]
fn power_cut_at_every_write_never_repeats_a_packet_nonce() {
    fn run(cut: Option<u32>) -> u32 {
        let (mut dev, mut hal) = end::<Aes128>(Role::Device, 0, 0);
        let start = hal.storage_writes;
        hal.power_cut_after = cut;
        let mut seen = HashSet::new();
        let mut heap_mem = TH::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        for i in 0..100u8 {
            heap.set_request(h, &[i & 0x7f, i]).unwrap();
            match dev.send(&mut heap, h, &mut hal) {
                Ok(_) => {
                    let pkt = heap.reply(h).unwrap();
                    assert!(
                        seen.insert(pkt[..6].to_vec()),
                        "nonce repeated, cut {cut:?}"
                    );
                }
                Err(e) => {
                    assert_eq!(e, Error::Storage);
                    assert!(heap.reply(h).unwrap().is_empty());
                    hal = hal.rebooted();
                    let store = NonceStore::open(&mut hal, 0, 16, KID, BlankStart::Refuse).unwrap();
                    dev = Sasp::new(&KEY, Role::Device, store).unwrap();
                }
            }
        }
        hal.storage_writes - start
    }
    let total = run(None);
    assert_eq!(total, 5 * 7); // 100 packets, reserve 16: 7 records of 5 granules
    for cut in 0..=total {
        run(Some(cut));
    }
}

proptest! {
    #[test]
    fn prop_round_trip(payload in proptest::collection::vec(any::<u8>(), 1..120),
                       extra in proptest::option::of(0usize..300)) {
        let mut payload = payload;
        payload[0] &= 0x7f;
        let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
        let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
        let pad_to = extra.map(|e| payload.len() + e);
        let pkt = send_padded(&mut cli, &mut chal, &payload, pad_to);
        prop_assert_eq!(pkt.len(), packet_len(pad_to.unwrap_or(payload.len())));
        prop_assert_eq!(recv(&mut dev, &mut dhal, &pkt), (HandlerOutcome::Pass, payload));
    }

    /// Arbitrary bytes never panic, never pass, never change the nonces.
    #[test]
    fn prop_garbage_is_ignored(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
        let (out, rep) = recv(&mut dev, &mut dhal, &bytes);
        prop_assert_eq!(out, HandlerOutcome::IgnorePacket);
        prop_assert!(rep.is_empty());
        prop_assert_eq!((dev.nonces().nfs(), dev.nonces().nlw()), (0, 0));
    }
}

#[test]
fn storage_failure_on_receive_drops_the_plaintext() {
    let (mut dev, mut dhal) = end::<Aes128>(Role::Device, 0, 0);
    let (mut cli, mut chal) = end::<Aes128>(Role::Client, 0, 0);
    let p = send(&mut cli, &mut chal, &[0x44, 1, 2]);
    dhal.power_cut_after = Some(0);
    let mut heap_mem = TH::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, &p).unwrap();
    assert_eq!(dev.receive(&mut heap, h, &mut dhal), Err(Error::Storage));
    assert!(heap.reply(h).unwrap().is_empty());
    assert_eq!(dev.nonces().nlw(), 0);
    // After a reboot the packet is accepted once.
    let mut dhal = dhal.rebooted();
    let store = NonceStore::open(&mut dhal, 0, 16, KID, BlankStart::Refuse).unwrap();
    let mut dev = Sasp::<Aes128>::new(&KEY, Role::Device, store).unwrap();
    assert_eq!(
        recv(&mut dev, &mut dhal, &p),
        (HandlerOutcome::Pass, vec![0x44, 1, 2])
    );
    assert_eq!(recv(&mut dev, &mut dhal, &p).0, HandlerOutcome::ReplyDown);
}

#[test]
fn a_failed_announced_send_still_uses_its_nonce() {
    let (mut s, mut hal) = end::<Aes128>(Role::Device, 0, 0);
    let announced = s.next_packet_id();
    // A heap with no room for the packet: the send fails...
    let mut heap_mem = HeapMem::<24, 1>::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, &[0x01; 8]).unwrap();
    assert_eq!(
        s.send_announced(&mut heap, h, &mut hal, None),
        Err(Error::OutOfMemory)
    );
    // ...and the announced ID is never announced again.
    assert_ne!(s.next_packet_id(), announced);
    // A send that succeeds uses exactly one nonce.
    let mut heap_mem = HeapMem::<256, 1>::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().unwrap();
    heap.set_request(h, &[0x01; 8]).unwrap();
    let before = s.next_send_nonce();
    s.send_announced(&mut heap, h, &mut hal, None).unwrap();
    assert_eq!(s.next_send_nonce(), before + 1);
}

/// The cipher's name in messages is the cipher the build really uses.
#[test]
fn default_cipher_name_names_the_build_cipher() {
    let ty = std::any::type_name::<DefaultCipher>();
    let want = if ty.contains("Speck128_128") {
        "Speck-128/128"
    } else {
        assert!(ty.ends_with("Aes128"), "{ty}");
        "AES-128"
    };
    assert_eq!(DEFAULT_CIPHER_NAME, want);
}
