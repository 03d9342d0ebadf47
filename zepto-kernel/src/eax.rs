//! EAX authenticated encryption (Bellare, Rogaway, Wagner, "The EAX Mode of
//! Operation", FSE 2004) and OMAC1/CMAC over one expanded 128-bit block cipher.
//!
//! SASP encrypts with EAX and SACCP's program checksum is a CMAC. This module keeps
//! the cipher's expanded key once (in [`Eax`]) and works block by block in place:
//! one 16-byte chaining block per OMAC, one counter block and one keystream block for
//! CTR. The cipher itself comes from a well-kept crate (`aes`, `speck-cipher`), or
//! from a port that implements the `cipher` traits over an AES block in hardware.
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
//! What depends on the key alone is computed once, in [`Eax::new_from_slice`]: `B`,
//! the encrypted first blocks of `OMAC^0` and `OMAC^2` and `OMAC^1` of the empty
//! header (SASP has none). A packet then costs one block for `N` and two per block
//! of data (CTR and `OMAC^2`); those two are independent, so they go to the cipher
//! together where its backend encrypts exactly two blocks at once (the `aes`
//! crate's software backend does, on 32-bit CPUs). Open computes `OMAC^2(C)` and decrypts in
//! the same pass; if the tag does not match it encrypts the data back, so a wrong tag
//! leaves the buffer as it was.

use crate::error::Error;
use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
    KeyInit, ParBlocks,
};

/// Block and tag bytes.
pub const BLOCK: usize = 16;

/// A block in the form the cipher encrypts.
type Blk = Array<u8, U16>;

/// A 128-bit block cipher EAX and CMAC can run over.
pub trait BlockCipher128: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt {}

impl<T: BlockSizeUser<BlockSize = U16> + BlockCipherEncrypt> BlockCipher128 for T {}

/// Doubling in GF(2^128) with the polynomial x^128 + x^7 + x^2 + x + 1.
fn dbl(b: &mut Blk) {
    let carry = b.first().map_or(0, |x| x >> 7);
    let mut next = 0u8;
    for x in b.iter_mut().rev() {
        let top = *x >> 7;
        *x = (*x << 1) | next;
        next = top;
    }
    if let Some(last) = b.last_mut() {
        *last ^= 0x87 & 0u8.wrapping_sub(carry);
    }
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
    let mut p = Blk::default();
    if let Some(b) = p.last_mut() {
        *b = t;
    }
    p
}

/// Whether blocks go to the backend in pairs: where it encrypts exactly two at
/// once (the `aes` crate's software backend on 32-bit CPUs). Wider backends
/// (AES instructions on a PC encrypt eight) get single blocks, which they do
/// faster than a batch with unused slots.
const fn pairs<B: BlockCipherEncBackend<BlockSize = U16>>() -> bool {
    B::ParBlocksSize::USIZE == 2
}

/// Encrypts one block in place with the cipher's backend. A backend that works in
/// pairs gets it as one of a pair, so that only its two-block code is linked (the
/// `aes` crate has separate one-block code).
fn enc<B: BlockCipherEncBackend<BlockSize = U16>>(b: &B, x: &mut Blk) {
    if pairs::<B>() {
        let mut y = Blk::default();
        enc2(b, x, &mut y);
    } else {
        b.encrypt_block(x.into());
    }
}

/// Encrypts two independent blocks in place, in one backend call where the backend
/// works in pairs.
fn enc2<B: BlockCipherEncBackend<BlockSize = U16>>(b: &B, x: &mut Blk, y: &mut Blk) {
    if !pairs::<B>() {
        b.encrypt_block(x.into());
        b.encrypt_block(y.into());
        return;
    }
    let mut pair = [*x, *y];
    // The pair seen as the backend's batch of (exactly) two blocks.
    if let Some(par) = ParBlocks::<B>::slice_as_mut_array(&mut pair) {
        b.encrypt_par_blocks(par.into());
    }
    [*x, *y] = pair;
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

/// The input of the last cipher call of a CMAC over `data` (not empty, or a plain
/// CMAC with `x` = 0) that has chained to `x` so far.
fn last_input<B: BlockCipherEncBackend<BlockSize = U16>>(
    c: &B,
    b: &Blk,
    mut x: Blk,
    data: &[u8],
) -> Blk {
    let n = data.len().div_ceil(BLOCK);
    for (i, chunk) in data.chunks(BLOCK).enumerate() {
        xor_into(&mut x, chunk);
        if i + 1 == n {
            finish(&mut x, b, chunk.len());
            return x;
        }
        enc(c, &mut x);
    }
    // Empty message: one padded block.
    finish(&mut x, b, 0);
    x
}

/// What depends on the key alone.
#[derive(Clone, Default)]
struct Keyed {
    /// `B = dbl(E(0))`.
    b: Blk,
    /// `E([0; 15] || 0)`: `OMAC^0` after its first block.
    e0: Blk,
    /// `E([0; 15] || 2)`: `OMAC^2` after its first block.
    e2: Blk,
    /// `OMAC^1` of the empty header.
    h: Blk,
}

/// The input of the last cipher call of `OMAC^t(data)`.
fn omac_input<B: BlockCipherEncBackend<BlockSize = U16>>(
    c: &B,
    k: &Keyed,
    t: u8,
    data: &[u8],
) -> Blk {
    let mut x = omac_prefix(t);
    if data.is_empty() {
        xor_into(&mut x, &k.b);
        return x;
    }
    match t {
        0 => x = k.e0,
        2 => x = k.e2,
        _ => enc(c, &mut x),
    }
    last_input(c, &k.b, x, data)
}

/// What one [`Job`] computes.
enum Mode<'a> {
    /// `CMAC(aad)` into `tag`.
    Cmac,
    /// Encrypt `buf`, tag into `tag`.
    Seal(&'a Keyed),
    /// Check `tag` and decrypt `buf`; `ok` tells whether the tag matched (if not,
    /// `buf` is left as it was).
    Open(&'a Keyed),
}

/// One whole CMAC, seal or open, run inside the cipher's backend: a cipher that
/// prepares its round keys per call (the `aes` crate's software backend copies
/// them into a wider array for its two-block code) does so once per operation, not
/// once per block.
struct Job<'a> {
    mode: Mode<'a>,
    nonce: &'a [u8],
    aad: &'a [u8],
    buf: &'a mut [u8],
    tag: Blk,
    ok: bool,
}

impl BlockSizeUser for &mut Job<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for &mut Job<'_> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, c: &B) {
        match &mut self.mode {
            Mode::Cmac => {
                let mut l = Blk::default();
                enc(c, &mut l);
                dbl(&mut l);
                let mut x = last_input(c, &l, Blk::default(), self.aad);
                enc(c, &mut x);
                self.tag = x;
            }
            Mode::Seal(k) => self.tag = seal(c, k, self.nonce, self.aad, self.buf),
            Mode::Open(k) => {
                self.ok = open(c, k, self.nonce, self.aad, self.buf, &self.tag);
            }
        }
    }
}

/// The per-key values are computed in a closure of their own. (Measured on the
/// Cortex-M0 firmware: with a second closure type the `aes` crate's per-call copy
/// of its round keys stays out of line, in a frame that is gone before the blocks
/// are encrypted: 300 B less peak stack than with one closure type for all.)
impl BlockSizeUser for &mut Keyed {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for &mut Keyed {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, c: &B) {
        init(c, self);
    }
}

/// Computes the per-key values.
fn init<B: BlockCipherEncBackend<BlockSize = U16>>(c: &B, k: &mut Keyed) {
    let mut l = Blk::default();
    let mut e0 = omac_prefix(0);
    enc2(c, &mut l, &mut e0);
    dbl(&mut l);
    let mut e2 = omac_prefix(2);
    let mut h = omac_prefix(1);
    xor_into(&mut h, &l);
    enc2(c, &mut e2, &mut h);
    *k = Keyed { b: l, e0, e2, h };
}

/// `OMAC^1(aad)`.
fn header_mac<B: BlockCipherEncBackend<BlockSize = U16>>(c: &B, k: &Keyed, aad: &[u8]) -> Blk {
    if aad.is_empty() {
        return k.h;
    }
    let mut x = omac_input(c, k, 1, aad);
    enc(c, &mut x);
    x
}

/// `OMAC^2` of the empty message.
fn empty_mac<B: BlockCipherEncBackend<BlockSize = U16>>(c: &B, k: &Keyed) -> Blk {
    let mut x = omac_input(c, k, 2, &[]);
    enc(c, &mut x);
    x
}

/// Encrypts `buf` in place; returns the tag.
fn seal<B: BlockCipherEncBackend<BlockSize = U16>>(
    c: &B,
    k: &Keyed,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
) -> Blk {
    let mut n = omac_input(c, k, 0, nonce);
    enc(c, &mut n);
    let mut tag = header_mac(c, k, aad);
    xor_into(&mut tag, &n);
    if buf.is_empty() {
        xor_into(&mut tag, &empty_mac(c, k));
        return tag;
    }
    // Keystream block i+1 and the OMAC^2 step over ciphertext block i go together.
    let mut x = k.e2;
    let mut ctr = n;
    let mut ks = ctr;
    enc(c, &mut ks);
    let m = buf.len().div_ceil(BLOCK);
    for (i, chunk) in buf.chunks_mut(BLOCK).enumerate() {
        xor_into(chunk, &ks);
        xor_into(&mut x, chunk);
        if i + 1 == m {
            finish(&mut x, &k.b, chunk.len());
            enc(c, &mut x);
        } else {
            inc(&mut ctr);
            ks = ctr;
            enc2(c, &mut x, &mut ks);
        }
    }
    xor_into(&mut tag, &x);
    tag
}

/// XORs `buf`'s CTR keystream from counter `n` into it.
fn ctr<B: BlockCipherEncBackend<BlockSize = U16>>(c: &B, n: &Blk, buf: &mut [u8]) {
    let mut ctr = *n;
    for chunk in buf.chunks_mut(BLOCK) {
        let mut ks = ctr;
        enc(c, &mut ks);
        xor_into(chunk, &ks);
        inc(&mut ctr);
    }
}

/// Checks `tag` and decrypts `buf` in place; on a wrong tag `buf` is encrypted
/// back and the result is false.
fn open<B: BlockCipherEncBackend<BlockSize = U16>>(
    c: &B,
    k: &Keyed,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &Blk,
) -> bool {
    let mut n = omac_input(c, k, 0, nonce);
    let mut t = header_mac(c, k, aad);
    let x = if buf.is_empty() {
        enc(c, &mut n);
        empty_mac(c, k)
    } else {
        // The OMAC^2 step over ciphertext block i+1 goes with keystream block i;
        // block i is decrypted after it was MACed.
        let m = buf.len().div_ceil(BLOCK);
        let mut x = k.e2;
        let mut chunks = buf.chunks_mut(BLOCK);
        let mut cur = chunks.next();
        if let Some(first) = cur.as_deref() {
            xor_into(&mut x, first);
            if m == 1 {
                finish(&mut x, &k.b, first.len());
            }
        }
        enc2(c, &mut n, &mut x);
        let mut ctr = n;
        let mut i = 1;
        while let Some(chunk) = cur {
            let next = chunks.next();
            let mut ks = ctr;
            match next.as_deref() {
                Some(nx) => {
                    xor_into(&mut x, nx);
                    i += 1;
                    if i == m {
                        finish(&mut x, &k.b, nx.len());
                    }
                    enc2(c, &mut ks, &mut x);
                }
                None => enc(c, &mut ks),
            }
            xor_into(chunk, &ks);
            inc(&mut ctr);
            cur = next;
        }
        x
    };
    xor_into(&mut t, &n);
    xor_into(&mut t, &x);
    // Compare without an early exit.
    let diff = t
        .iter()
        .zip(tag.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        ctr(c, &n, buf);
    }
    diff == 0
}

/// Runs one job with `cipher`'s backend; returns its tag and whether an opened
/// tag matched.
fn run<C: BlockCipher128>(
    cipher: &C,
    mode: Mode<'_>,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: Blk,
) -> (Blk, bool) {
    let mut job = Job {
        mode,
        nonce,
        aad,
        buf,
        tag,
        ok: false,
    };
    cipher.encrypt_with_backend(&mut job);
    (job.tag, job.ok)
}

/// CMAC (OMAC1) of `data` under `cipher` (RFC 4493 for AES-128).
pub fn cmac<C: BlockCipher128>(cipher: &C, data: &[u8]) -> [u8; BLOCK] {
    run(cipher, Mode::Cmac, &[], data, &mut [], Blk::default())
        .0
        .into()
}

/// EAX over a 128-bit block cipher whose key is expanded once, at construction,
/// together with the values EAX derives from the key alone (64 bytes).
#[derive(Clone)]
pub struct Eax<C> {
    cipher: C,
    keys: Keyed,
}

impl<C> core::fmt::Debug for Eax<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Eax { .. }")
    }
}

impl<C: BlockCipher128 + KeyInit> Eax<C> {
    /// EAX with `key`; [`Error::ValueOutOfRange`] unless it is the cipher's key
    /// length.
    pub fn new_from_slice(key: &[u8]) -> Result<Self, Error> {
        let cipher = C::new_from_slice(key).map_err(|_| Error::ValueOutOfRange)?;
        Ok(Self::from_cipher(cipher))
    }

    /// Takes `key` in place (no copy of the expanded key through the caller's
    /// stack); [`Error::ValueOutOfRange`] unless it is the cipher's key length, and
    /// then nothing changed.
    #[inline(never)]
    pub fn set_key(&mut self, key: &[u8]) -> Result<(), Error> {
        self.cipher = C::new_from_slice(key).map_err(|_| Error::ValueOutOfRange)?;
        self.cipher.encrypt_with_backend(&mut self.keys);
        Ok(())
    }
}

impl<C: BlockCipher128> Eax<C> {
    /// EAX over an already keyed `cipher`.
    pub fn from_cipher(cipher: C) -> Self {
        let mut keys = Keyed::default();
        cipher.encrypt_with_backend(&mut keys);
        Self { cipher, keys }
    }

    /// The block cipher.
    pub const fn cipher(&self) -> &C {
        &self.cipher
    }

    /// Encrypts `buf` in place; returns the 16-byte tag.
    pub fn seal(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> [u8; BLOCK] {
        run(
            &self.cipher,
            Mode::Seal(&self.keys),
            nonce,
            aad,
            buf,
            Blk::default(),
        )
        .0
        .into()
    }

    /// Checks `tag` and decrypts `buf` in place. On a wrong tag (or a tag that is
    /// not 16 bytes) `buf` is unchanged and the result is
    /// [`Error::AuthenticationFailed`].
    pub fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        let Ok(tag) = <[u8; BLOCK]>::try_from(tag) else {
            return Err(Error::AuthenticationFailed);
        };
        let (_, ok) = run(
            &self.cipher,
            Mode::Open(&self.keys),
            nonce,
            aad,
            buf,
            tag.into(),
        );
        if ok {
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
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
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
        let aes = Aes128::new_from_slice(&key).unwrap();
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
        let mut b = Blk::default();
        b[0] = 0x80;
        dbl(&mut b);
        let mut want = [0u8; 16];
        want[15] = 0x87;
        assert_eq!(<[u8; 16]>::from(b), want);
        let mut b = Blk::default();
        b[15] = 0x81;
        dbl(&mut b);
        want = [0; 16];
        want[14] = 1;
        want[15] = 2;
        assert_eq!(<[u8; 16]>::from(b), want);
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

            let theirs = ::eax::Eax::<Aes128>::new_from_slice(&key).unwrap();
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
            let mut m = <::cmac::Cmac<Aes128> as ::cmac::KeyInit>::new(&key.into());
            m.update(&msg);
            let want: [u8; 16] = m.finalize().into_bytes().into();
            let aes = Aes128::new_from_slice(&key).unwrap();
            prop_assert_eq!(cmac(&aes, &msg), want);
        }
    }

    /// AES whose backend encrypts blocks two at a time, as the `aes` crate's
    /// software backend does on 32-bit MCUs: the paired code path, on the host.
    struct Pairs(Aes128);

    /// The backend of [`Pairs`]: the inner backend, with batches of two.
    struct PairBackend<'a, B>(&'a B);

    impl<B: BlockCipherEncBackend<BlockSize = U16>> BlockSizeUser for PairBackend<'_, B> {
        type BlockSize = U16;
    }

    impl<B: BlockCipherEncBackend<BlockSize = U16>> aes::cipher::ParBlocksSizeUser
        for PairBackend<'_, B>
    {
        type ParBlocksSize = aes::cipher::consts::U2;
    }

    impl<B: BlockCipherEncBackend<BlockSize = U16>> BlockCipherEncBackend for PairBackend<'_, B> {
        fn encrypt_block(&self, block: aes::cipher::inout::InOut<'_, '_, Blk>) {
            self.0.encrypt_block(block);
        }
        fn encrypt_par_blocks(
            &self,
            mut blocks: aes::cipher::inout::InOut<'_, '_, ParBlocks<Self>>,
        ) {
            let mut b = blocks.clone_in();
            for x in b.iter_mut() {
                self.0.encrypt_block(x.into());
            }
            *blocks.get_out() = b;
        }
    }

    /// Hands the closure the pairing backend.
    struct PairClosure<F>(F);

    impl<F: BlockCipherEncClosure<BlockSize = U16>> BlockSizeUser for PairClosure<F> {
        type BlockSize = U16;
    }

    impl<F: BlockCipherEncClosure<BlockSize = U16>> BlockCipherEncClosure for PairClosure<F> {
        fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
            self.0.call(&PairBackend(backend));
        }
    }

    impl BlockSizeUser for Pairs {
        type BlockSize = U16;
    }

    impl BlockCipherEncrypt for Pairs {
        fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = U16>) {
            self.0.encrypt_with_backend(PairClosure(f));
        }
    }

    proptest! {
        /// The paired path (CTR and OMAC blocks two at a time) gives the same bytes
        /// as the one-block path, and open restores the data on a wrong tag.
        #[test]
        fn pairs_match_single_blocks(
            key in any::<[u8; 16]>(),
            nonce in proptest::collection::vec(any::<u8>(), 0..20),
            aad in proptest::collection::vec(any::<u8>(), 0..20),
            msg in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            let one = Eax::<Aes128>::new_from_slice(&key).unwrap();
            let two = Eax::from_cipher(Pairs(Aes128::new_from_slice(&key).unwrap()));
            let (mut a, mut b) = (msg.clone(), msg.clone());
            let ta = one.seal(&nonce, &aad, &mut a);
            let tb = two.seal(&nonce, &aad, &mut b);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(ta, tb);
            let mut bad = tb;
            bad[0] ^= 1;
            prop_assert_eq!(two.open(&nonce, &aad, &mut b, &bad), Err(Error::AuthenticationFailed));
            prop_assert_eq!(&b, &a);
            prop_assert_eq!(two.open(&nonce, &aad, &mut b, &tb), Ok(()));
            prop_assert_eq!(&b, &msg);
            prop_assert_eq!(
                cmac(&Pairs(Aes128::new_from_slice(&key).unwrap()), &msg),
                cmac(&Aes128::new_from_slice(&key).unwrap(), &msg)
            );
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
            let want_tag = ::eax::Eax::<Speck128_128>::new_from_slice(&key)
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
