//! EAX authenticated encryption (Bellare, Rogaway, Wagner, "The EAX Mode of
//! Operation", FSE 2004) and OMAC1/CMAC over one expanded 128-bit block cipher.
//!
//! SASP encrypts with EAX and SACCP's program checksum is a CMAC. This module keeps
//! the cipher's expanded key once (in [`Eax`]) and works block by block in place:
//! one 16-byte chaining block per OMAC, one counter block and one keystream block for
//! CTR. The cipher itself comes from a well-kept crate (`aes`, `speck-cipher`), or
//! from a port's AES block in hardware ([`crate::hwaes`]), through
//! [`BlockCipher128`].
//!
//! With `L = E(0)`, `B = dbl(L)`, `P = dbl(B)` (doubling in GF(2^128)):
//!
//! * `CMAC(M)`: CBC-MAC of `M` whose last block is XORed with `B` if it is whole
//!   (and `M` is not empty), else padded with `80 00 ..` and XORed with `P`;
//! * `OMAC^t(M) = CMAC([0; 15] || t || M)`;
//! * seal: `N = OMAC^0(nonce)`, `H = OMAC^1(aad)`, `C = M xor CTR_N`,
//!   tag `= N xor H xor OMAC^2(C)`; CTR increments `N` as a 128-bit big-endian
//!   integer per block.
//!
//! `L` is the first block of `OMAC^0` encrypted, so `B` is derived per message
//! from a block that is encrypted anyway (nothing but the key is kept). A
//! packet costs the first blocks of `OMAC^0` and `OMAC^2`, one block for `N` and
//! `OMAC^1` of the header (SASP has none), and two per block of data (CTR and
//! `OMAC^2`). Independent blocks go to the cipher together
//! ([`BlockCipher128::encrypt2`]: the `aes` crate's software code on 32-bit CPUs
//! encrypts two blocks for the price of one): the two first blocks, `N` with the
//! header's MAC, each keystream block with an `OMAC^2` step. Seal and open are one
//! pass over the data (encrypting, or decrypting while `OMAC^2` reads the
//! ciphertext first); if the tag does not match, open runs the pass again to
//! encrypt the data back, so a wrong tag leaves the buffer as it was.

pub use crate::cipher::{BlockCipher128, KeyInit128};
use crate::error::Error;
use core::marker::PhantomData;

/// Block and tag bytes.
pub const BLOCK: usize = 16;

/// One cipher block.
type Blk = [u8; BLOCK];

/// Doubling in GF(2^128) with the polynomial x^128 + x^7 + x^2 + x + 1.
fn dbl(b: &mut Blk) {
    let carry = b[0] >> 7;
    let mut next = 0u8;
    for x in b.iter_mut().rev() {
        let top = *x >> 7;
        *x = (*x << 1) | next;
        next = top;
    }
    b[BLOCK - 1] ^= 0x87 & 0u8.wrapping_sub(carry);
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Adds one to a counter block (128-bit big-endian).
fn inc(c: &mut Blk) {
    for b in c.iter_mut().rev() {
        *b = b.wrapping_add(1);
        if *b != 0 {
            break;
        }
    }
}

/// The block `[0; 15] || t` that starts `OMAC^t`.
fn omac_prefix(t: u8) -> Blk {
    let mut p = [0; BLOCK];
    p[BLOCK - 1] = t;
    p
}

/// Finishes the last block of a CMAC: `len` message bytes of it are already XORed
/// into `x`; a whole block gets `B`, a partial one the `80` pad and `P = dbl(B)`.
fn finish(x: &mut Blk, b: &Blk, len: usize) {
    let mut k = *b;
    if len < BLOCK {
        dbl(&mut k);
        if let Some(v) = x.get_mut(len) {
            *v ^= 0x80;
        }
    }
    xor_into(x, &k);
}

/// Turns `x`, a CMAC chained so far (over the message's start, or 0 for a plain
/// CMAC), into the input of the last cipher call of the CMAC over `data` (not
/// empty, for a chained one).
fn last_input<C: BlockCipher128 + ?Sized>(c: &C, b: &Blk, x: &mut Blk, data: &[u8]) {
    let mut rest = data;
    // An empty message is one padded block.
    while let Some((chunk, tail)) = rest.split_at_checked(rest.len().min(BLOCK)) {
        xor_into(x, chunk);
        if tail.is_empty() {
            finish(x, b, chunk.len());
            return;
        }
        c.encrypt(x);
        rest = tail;
    }
}

/// `E([0; 15] || 0)` and `E([0; 15] || 2)`: `OMAC^0` and `OMAC^2` after their
/// first block, in one cipher call. The first is also `L = E(0)`, from which `B`
/// comes: nothing needs to be kept per key but the key.
#[inline(always)]
fn starts<C: BlockCipher128 + ?Sized>(c: &C) -> (Blk, Blk) {
    let (mut e0, mut e2) = (omac_prefix(0), omac_prefix(2));
    c.encrypt2(&mut e0, &mut e2);
    (e0, e2)
}

/// Turns `x` = `E([0; 15] || t)` (not used for empty data) into the input of
/// the last cipher call of `OMAC^t(data)`.
fn omac_input<C: BlockCipher128 + ?Sized>(c: &C, b: &Blk, t: u8, x: &mut Blk, data: &[u8]) {
    if data.is_empty() {
        *x = omac_prefix(t);
        xor_into(x, b);
        return;
    }
    last_input(c, b, x, data)
}

/// Writes into `x` the input of the last cipher call of `OMAC^1(aad)` (SASP has
/// no header: then no cipher call is needed before it).
fn header_input<C: BlockCipher128 + ?Sized>(c: &C, b: &Blk, aad: &[u8], x: &mut Blk) {
    *x = omac_prefix(1);
    if !aad.is_empty() {
        c.encrypt(x);
    }
    omac_input(c, b, 1, x, aad)
}

/// Encrypts (or, with `decrypt`, decrypts) `buf` in place and writes the tag of
/// the ciphertext into `tag`: seal, and the pass of open, which then compares the
/// tag and on a mismatch runs it again to encrypt the data back. (Out of line: its
/// blocks are on the stack only while it runs, not in its caller's frame; the tag
/// goes straight to where the caller keeps it.)
#[inline(never)]
fn crypt<C: BlockCipher128 + ?Sized>(
    c: &C,
    nonce: &[u8],
    tag: &mut Blk,
    decrypt: bool,
    aad: &[u8],
    buf: &mut [u8],
) {
    // `x` starts as E([0; 15] || 2) and chains OMAC^2 over the ciphertext.
    // `n` starts as E([0; 15] || 0), which is also L = E(0): B = dbl(L).
    let (mut n, mut x) = starts(c);
    let mut b = n;
    dbl(&mut b);
    omac_input(c, &b, 0, &mut n, nonce);
    header_input(c, &b, aad, tag);
    // N = OMAC^0(nonce) and H = OMAC^1(aad) together.
    c.encrypt2(&mut n, tag);
    xor_into(tag, &n);
    if buf.is_empty() {
        // OMAC^2 of the empty message.
        omac_input(c, &b, 2, &mut x, &[]);
        c.encrypt(&mut x);
        xor_into(tag, &x);
        return;
    }
    // `n` counts from N on; keystream block i+1 and the OMAC^2 step over
    // ciphertext block i go together.
    let mut ks = n;
    c.encrypt(&mut ks);
    let mut rest = buf;
    while let Some((chunk, tail)) = rest.split_at_mut_checked(rest.len().min(BLOCK)) {
        if decrypt {
            xor_into(&mut x, chunk);
        }
        xor_into(chunk, &ks);
        if !decrypt {
            xor_into(&mut x, chunk);
        }
        if tail.is_empty() {
            finish(&mut x, &b, chunk.len());
            c.encrypt(&mut x);
            break;
        }
        inc(&mut n);
        ks = n;
        c.encrypt2(&mut x, &mut ks);
        rest = tail;
    }
    xor_into(tag, &x);
}

/// Encrypts `buf` in place and writes the tag into `tag`.
fn seal<C: BlockCipher128 + ?Sized>(
    c: &C,
    nonce: &[u8],
    tag: &mut Blk,
    aad: &[u8],
    buf: &mut [u8],
) {
    crypt(c, nonce, tag, false, aad, buf);
}

/// Decrypts `buf` in place and checks `tag`; on a wrong tag `buf` is encrypted
/// back and the result is false.
fn open<C: BlockCipher128 + ?Sized>(
    c: &C,
    nonce: &[u8],
    tag: &Blk,
    aad: &[u8],
    buf: &mut [u8],
) -> bool {
    let mut t = [0; BLOCK];
    crypt(c, nonce, &mut t, true, aad, buf);
    // Compare without an early exit.
    let diff = t
        .iter()
        .zip(tag.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        crypt(c, nonce, &mut t, false, aad, buf);
    }
    diff == 0
}

/// CMAC (OMAC1) of `data` under `cipher` (RFC 4493 for AES-128).
pub fn cmac<C: BlockCipher128 + ?Sized>(cipher: &C, data: &[u8]) -> [u8; BLOCK] {
    let mut l = [0; BLOCK];
    cipher.encrypt(&mut l);
    dbl(&mut l);
    let mut x = [0; BLOCK];
    last_input(cipher, &l, &mut x, data);
    cipher.encrypt(&mut x);
    x
}

/// EAX over a 128-bit block cipher whose key is expanded once, at construction.
#[derive(Clone)]
pub struct Eax<C> {
    cipher: C,
}

impl<C> core::fmt::Debug for Eax<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Eax { .. }")
    }
}

impl<C: BlockCipher128 + KeyInit128> Eax<C> {
    /// EAX with `key`; [`Error::ValueOutOfRange`] unless it is 16 bytes long.
    pub fn new_from_slice(key: &[u8]) -> Result<Self, Error> {
        let key: &[u8; 16] = key.try_into().map_err(|_| Error::ValueOutOfRange)?;
        Ok(Self::from_cipher(C::new(key)))
    }

    /// Takes `key` in place (no copy of the expanded key through the caller's
    /// stack).
    #[inline(never)]
    pub fn set_key(&mut self, key: &[u8; 16]) {
        self.cipher = C::new(key);
    }
}

impl<C: BlockCipher128> Eax<C> {
    /// EAX over an already keyed `cipher`.
    pub fn from_cipher(cipher: C) -> Self {
        Self { cipher }
    }

    /// The block cipher.
    pub const fn cipher(&self) -> &C {
        &self.cipher
    }

    /// Encrypts `buf` in place; returns the 16-byte tag.
    pub fn seal(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> [u8; BLOCK] {
        let mut tag = [0; BLOCK];
        seal(&self.cipher, nonce, &mut tag, aad, buf);
        tag
    }

    /// Encrypts `buf` in place and writes the 16-byte tag into `tag` (no copy of
    /// it through the caller's stack).
    pub fn seal_to(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &mut [u8; BLOCK]) {
        seal(&self.cipher, nonce, tag, aad, buf);
    }

    /// Checks `tag` and decrypts `buf` in place. On a wrong tag (or a tag that is
    /// not 16 bytes) `buf` is unchanged and the result is
    /// [`Error::AuthenticationFailed`].
    pub fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        let Ok(tag) = <&[u8; BLOCK]>::try_from(tag) else {
            return Err(Error::AuthenticationFailed);
        };
        if open(&self.cipher, nonce, tag, aad, buf) {
            Ok(())
        } else {
            Err(Error::AuthenticationFailed)
        }
    }
}

/// [`seal`] with the cipher expanded from `key` in this function's frame (out of
/// line: the round keys exist only while a message is sealed).
#[inline(never)]
fn seal_key<C: BlockCipher128 + KeyInit128>(
    key: &Blk,
    nonce: &[u8],
    tag: &mut Blk,
    aad: &[u8],
    buf: &mut [u8],
) {
    seal(&C::new(key), nonce, tag, aad, buf);
}

/// [`open`] with the cipher expanded from `key` in this function's frame.
#[inline(never)]
fn open_key<C: BlockCipher128 + KeyInit128>(
    key: &Blk,
    nonce: &[u8],
    tag: &Blk,
    aad: &[u8],
    buf: &mut [u8],
) -> bool {
    open(&C::new(key), nonce, tag, aad, buf)
}

/// EAX that keeps its key, not the expanded cipher: each seal and open
/// expands the key in a frame of its own, which exists only while the message is
/// encrypted. (For the `aes` crate's AES-128 that takes its 352 bytes of round keys
/// out of the long-lived state, where they sat under every call path of a device,
/// for one key expansion per message; `docs/decisions.md`.)
#[derive(Clone)]
pub struct EaxKey<C> {
    key: [u8; BLOCK],
    cipher: PhantomData<C>,
}

impl<C> core::fmt::Debug for EaxKey<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EaxKey { .. }")
    }
}

impl<C: BlockCipher128 + KeyInit128> EaxKey<C> {
    /// EAX with `key` (kept as it is).
    pub const fn new(key: &[u8; BLOCK]) -> Self {
        Self {
            key: *key,
            cipher: PhantomData,
        }
    }

    /// The block cipher, expanded from the key.
    pub fn cipher(&self) -> C {
        C::new(&self.key)
    }

    /// As [`Eax::seal_to`], with the cipher expanded for this message.
    pub fn seal_to(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &mut [u8; BLOCK]) {
        seal_key::<C>(&self.key, nonce, tag, aad, buf);
    }

    /// As [`Eax::open`], with the cipher expanded for this message.
    pub fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        // The tag is read where it is (a copy would take 16 bytes in the frame of
        // the caller, on the way to the cipher).
        let Ok(tag) = <&[u8; BLOCK]>::try_from(tag) else {
            return Err(Error::AuthenticationFailed);
        };
        if open_key::<C>(&self.key, nonce, tag, aad, buf) {
            Ok(())
        } else {
            Err(Error::AuthenticationFailed)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use ::eax::aead::AeadInOut;
    use aes::Aes128;
    use aes09::cipher::KeyInit as _;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn aes(key: &[u8]) -> Aes128 {
        <Aes128 as KeyInit128>::new(key.try_into().unwrap())
    }

    /// RFC 4493 section 4: CMAC-AES128 of the empty message and of 16, 40 and 64
    /// bytes.
    #[test]
    fn cmac_rfc4493_vectors() {
        let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
        let msg = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52ef",
            "f69f2445df4f9b17ad2b417be66c3710"
        ));
        let aes = aes(&key);
        for (len, mac) in [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            assert_eq!(cmac(&aes, &msg[..len]).to_vec(), hex(mac), "length {len}");
        }
    }

    #[test]
    fn dbl_carries_into_the_polynomial() {
        let mut b = [0u8; 16];
        b[0] = 0x80;
        dbl(&mut b);
        let mut want = [0u8; 16];
        want[15] = 0x87;
        assert_eq!(b, want);
        let mut b = [0u8; 16];
        b[15] = 0x81;
        dbl(&mut b);
        want = [0; 16];
        want[14] = 1;
        want[15] = 2;
        assert_eq!(b, want);
    }

    /// AES with one block at a time: `encrypt2` as two `encrypt` calls.
    struct Singles(Aes128);

    impl BlockCipher128 for Singles {
        fn encrypt(&self, block: &mut [u8; 16]) {
            self.0.encrypt(block);
        }
    }

    proptest! {
        /// Same ciphertext and tag as the `eax` crate for any key, nonce, header
        /// and message; open inverts seal; a changed tag, ciphertext byte or nonce
        /// fails and leaves the buffer alone.
        #[test]
        fn matches_the_eax_crate(
            key in any::<[u8; 16]>(),
            nonce in any::<[u8; 16]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..40),
            msg in proptest::collection::vec(any::<u8>(), 0..70),
            flip in any::<usize>(),
        ) {
            let ours = Eax::<Aes128>::new_from_slice(&key).unwrap();
            let mut buf = msg.clone();
            let tag = ours.seal(&nonce, &aad, &mut buf);

            let theirs = ::eax::Eax::<aes09::Aes128>::new_from_slice(&key).unwrap();
            let mut want = msg.clone();
            let want_tag = theirs
                .encrypt_inout_detached(&nonce.into(), &aad, want.as_mut_slice().into())
                .unwrap();
            prop_assert_eq!(&buf, &want);
            prop_assert_eq!(tag.as_slice(), want_tag.as_slice());

            let mut bad = tag;
            bad[flip % 16] ^= 1 << (flip % 8);
            let mut b2 = buf.clone();
            prop_assert_eq!(ours.open(&nonce, &aad, &mut b2, &bad), Err(Error::AuthenticationFailed));
            prop_assert_eq!(&b2, &buf);
            prop_assert_eq!(ours.open(&nonce, &aad, &mut b2, &tag[..15]), Err(Error::AuthenticationFailed));
            if !b2.is_empty() {
                let i = flip % b2.len();
                b2[i] ^= 0x40;
                prop_assert_eq!(ours.open(&nonce, &aad, &mut b2, &tag), Err(Error::AuthenticationFailed));
                b2[i] ^= 0x40;
            }
            let mut n2 = nonce;
            n2[flip % 16] ^= 2;
            prop_assert_eq!(ours.open(&n2, &aad, &mut b2, &tag), Err(Error::AuthenticationFailed));

            prop_assert_eq!(ours.open(&nonce, &aad, &mut b2, &tag), Ok(()));
            prop_assert_eq!(&b2, &msg);
        }

        /// Same CMAC as the `cmac` crate for any key and length.
        #[test]
        fn cmac_matches_the_cmac_crate(
            key in any::<[u8; 16]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            use ::cmac::Mac;
            let mut m = <::cmac::Cmac<aes09::Aes128> as ::cmac::KeyInit>::new(&key.into());
            m.update(&msg);
            let want: [u8; 16] = m.finalize().into_bytes().into();
            prop_assert_eq!(cmac(&aes(&key), &msg), want);
        }

        /// A cipher without a two-block pass gives the same bytes, and open
        /// restores the data on a wrong tag.
        #[test]
        fn single_blocks_match_pairs(
            key in any::<[u8; 16]>(),
            nonce in proptest::collection::vec(any::<u8>(), 0..20),
            aad in proptest::collection::vec(any::<u8>(), 0..20),
            msg in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            let two = Eax::<Aes128>::new_from_slice(&key).unwrap();
            let one = Eax::from_cipher(Singles(aes(&key)));
            let (mut a, mut b) = (msg.clone(), msg.clone());
            let ta = one.seal(&nonce, &aad, &mut a);
            let tb = two.seal(&nonce, &aad, &mut b);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(ta, tb);
            let mut bad = ta;
            bad[0] ^= 1;
            prop_assert_eq!(one.open(&nonce, &aad, &mut a, &bad), Err(Error::AuthenticationFailed));
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(one.open(&nonce, &aad, &mut a, &ta), Ok(()));
            prop_assert_eq!(&a, &msg);
            prop_assert_eq!(cmac(&Singles(aes(&key)), &msg), cmac(&aes(&key), &msg));
        }
    }

    /// The 16-byte nonce whose `N = OMAC^0(nonce)` is `n` under `key`: with
    /// `E(0) = E([0; 15] || 0)` and `B = dbl(E(0))`, `N = E(E(0) ^ nonce ^ B)`, so
    /// the nonce is `D(n) ^ E(0) ^ B` (AES decrypts).
    fn nonce_for_n(key: &[u8; 16], n: [u8; 16]) -> [u8; 16] {
        use aes::cipher::BlockDecrypt;
        let c = aes(key);
        let mut x = n;
        c.decrypt_block((&mut x).into());
        let mut e0 = [0u8; 16];
        c.encrypt(&mut e0);
        let mut b = e0;
        dbl(&mut b);
        xor_into(&mut x, &e0);
        xor_into(&mut x, &b);
        // The nonce really gives `n`.
        let mut got = e0;
        omac_input(&c, &b, 0, &mut got, &x);
        c.encrypt(&mut got);
        assert_eq!(got, n);
        x
    }

    proptest! {
        /// CTR's 128-bit counter wraps from ff..ff to 00..00 (and carries through
        /// runs of ff bytes) as in the `eax` crate, in seal and in open: open
        /// decrypts the crate's ciphertext, and a wrong tag leaves it as it was
        /// (open counts its counter back to N before it encrypts the data back).
        #[test]
        fn counter_wraps_as_in_the_eax_crate(
            key in any::<[u8; 16]>(),
            ones in prop_oneof![Just(16usize), Just(15), Just(8), Just(1), 0usize..=16],
            back in prop_oneof![Just(0u8), 0u8..6],
            aad in proptest::collection::vec(any::<u8>(), 0..20),
            msg in proptest::collection::vec(any::<u8>(), 1..90),
            flip in any::<usize>(),
        ) {
            // N ends in `ones` bytes ff, the last one `back` less (the carry then
            // comes `back` blocks in).
            let mut n = [0x5au8; 16];
            for b in n.iter_mut().rev().take(ones) {
                *b = 0xff;
            }
            if ones > 0 {
                n[15] = 0xff - back;
            }
            let nonce = nonce_for_n(&key, n);
            let theirs = ::eax::Eax::<aes09::Aes128>::new_from_slice(&key).unwrap();
            let mut want = msg.clone();
            let want_tag = theirs
                .encrypt_inout_detached(&nonce.into(), &aad, want.as_mut_slice().into())
                .unwrap();
            let eax = Eax::<Aes128>::new_from_slice(&key).unwrap();
            let one = Eax::from_cipher(Singles(aes(&key)));
            let ek = EaxKey::<Aes128>::new(&key);
            let mut buf = msg.clone();
            let tag = eax.seal(&nonce, &aad, &mut buf);
            prop_assert_eq!(&buf, &want);
            prop_assert_eq!(tag.as_slice(), want_tag.as_slice());
            let mut bad = tag;
            bad[flip % 16] ^= 1 << (flip % 8);
            type Open<'a> = &'a dyn Fn(&mut [u8], &[u8]) -> Result<(), Error>;
            let opens: [Open<'_>; 3] = [
                &|b, t| eax.open(&nonce, &aad, b, t),
                &|b, t| one.open(&nonce, &aad, b, t),
                &|b, t| ek.open(&nonce, &aad, b, t),
            ];
            for open in opens {
                let mut b = want.clone();
                prop_assert_eq!(open(&mut b, &bad), Err(Error::AuthenticationFailed));
                prop_assert_eq!(&b, &want);
                prop_assert_eq!(open(&mut b, &want_tag), Ok(()));
                prop_assert_eq!(&b, &msg);
            }
        }
    }

    /// Speck-128/128 runs through the same code as AES.
    #[cfg(feature = "speck")]
    #[test]
    fn speck_matches_the_eax_crate() {
        use speck_cipher::Speck128_128;
        let key = *b"0123456789abcdef";
        let nonce = [7u8; 16];
        for len in [0usize, 1, 15, 16, 17, 33, 64] {
            let msg: Vec<u8> = (0..len as u8).collect();
            let mut buf = msg.clone();
            let ours = Eax::<Speck128_128>::new_from_slice(&key).unwrap();
            let tag = ours.seal(&nonce, b"hd", &mut buf);
            let mut want = msg.clone();
            let want_tag =
                <::eax::Eax<Speck128_128> as speck_cipher::cipher::KeyInit>::new_from_slice(&key)
                    .unwrap()
                    .encrypt_inout_detached(&nonce.into(), b"hd", want.as_mut_slice().into())
                    .unwrap();
            assert_eq!(buf, want);
            assert_eq!(tag.as_slice(), want_tag.as_slice());
            let mut bad = tag;
            bad[len % 16] ^= 4;
            assert_eq!(
                ours.open(&nonce, b"hd", &mut buf, &bad),
                Err(Error::AuthenticationFailed)
            );
            assert_eq!(buf, want, "a wrong tag leaves the data alone");
            assert_eq!(ours.open(&nonce, b"hd", &mut buf, &tag), Ok(()));
            assert_eq!(buf, msg);
        }
    }
}
