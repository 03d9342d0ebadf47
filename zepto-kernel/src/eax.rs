//! EAX authenticated encryption (Bellare, Rogaway, Wagner, "The EAX Mode of
//! Operation", FSE 2004) and OMAC1/CMAC over one expanded 128-bit block cipher.
//!
//! SASP encrypts with EAX and SACCP's program checksum is a CMAC. This module keeps
//! the cipher's expanded key once (in [`Eax`]) and works block by block in place:
//! one 16-byte chaining block per OMAC, one counter block and one keystream block for
//! CTR. The cipher itself comes from a well-kept crate (`aes`, `speck-cipher`).
//!
//! With `L = E(0)`, `B = dbl(L)`, `P = dbl(B)` (doubling in GF(2^128)):
//!
//! * `CMAC(M)`: CBC-MAC of `M` whose last block is XORed with `B` if it is whole
//!   (and `M` is not empty), else padded with `80 00 ..` and XORed with `P`;
//! * `OMAC^t(M) = CMAC([0; 15] || t || M)`;
//! * seal: `N = OMAC^0(nonce)`, `H = OMAC^1(aad)`, `C = M xor CTR_N`,
//!   tag `= N xor H xor OMAC^2(C)`; CTR increments `N` as a 128-bit big-endian
//!   integer per block. Open checks the tag before it decrypts.

use crate::error::Error;
use aes::cipher::consts::U16;
use aes::cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit,
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

/// Encrypts one block in place with the cipher's backend.
fn enc<B: BlockCipherEncBackend<BlockSize = U16>>(b: &B, x: &mut Blk) {
    b.encrypt_block(x.into());
}

/// CMAC of `prefix || data` (`prefix` is one whole block or nothing), with
/// `l = E(0)`.
fn mac<B: BlockCipherEncBackend<BlockSize = U16>>(
    cipher: &B,
    l: &Blk,
    prefix: Option<&Blk>,
    data: &[u8],
) -> Blk {
    let mut x = Blk::default();
    let mut k = *l;
    dbl(&mut k);
    if let Some(p) = prefix {
        xor_into(&mut x, p);
        if data.is_empty() {
            xor_into(&mut x, &k);
        }
        enc(cipher, &mut x);
        if data.is_empty() {
            return x;
        }
    }
    let n = data.len().div_ceil(BLOCK);
    if n == 0 {
        // Empty message: one padded block.
        dbl(&mut k);
        if let Some(b) = x.first_mut() {
            *b ^= 0x80;
        }
        xor_into(&mut x, &k);
        enc(cipher, &mut x);
        return x;
    }
    for (i, chunk) in data.chunks(BLOCK).enumerate() {
        xor_into(&mut x, chunk);
        if i + 1 == n {
            if chunk.len() < BLOCK {
                dbl(&mut k);
                if let Some(b) = x.get_mut(chunk.len()) {
                    *b ^= 0x80;
                }
            }
            xor_into(&mut x, &k);
        }
        enc(cipher, &mut x);
    }
    x
}

/// `OMAC^t(data)`.
fn omac<B: BlockCipherEncBackend<BlockSize = U16>>(cipher: &B, l: &Blk, t: u8, data: &[u8]) -> Blk {
    let mut p = Blk::default();
    if let Some(b) = p.last_mut() {
        *b = t;
    }
    mac(cipher, l, Some(&p), data)
}

/// XORs the CTR keystream starting at counter `ctr` into `buf`.
fn ctr<B: BlockCipherEncBackend<BlockSize = U16>>(cipher: &B, ctr: &Blk, buf: &mut [u8]) {
    let mut c = *ctr;
    for chunk in buf.chunks_mut(BLOCK) {
        let mut ks = c;
        enc(cipher, &mut ks);
        xor_into(chunk, &ks);
        for b in c.iter_mut().rev() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
    }
}

/// What one [`Job`] computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `CMAC(aad)` into `tag`.
    Cmac,
    /// Encrypt `buf`, tag into `tag`.
    Seal,
    /// Check `tag`, then decrypt `buf`; `ok` tells whether the tag matched.
    Open,
}

/// One whole CMAC, seal or open, run inside the cipher's backend: a cipher that
/// prepares its round keys per call (the `aes` crate's software backend copies
/// them into a wider array) does so once per operation, not once per block.
struct Job<'a> {
    mode: Mode,
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
        let mut l = Blk::default();
        enc(c, &mut l);
        if self.mode == Mode::Cmac {
            self.tag = mac(c, &l, None, self.aad);
            return;
        }
        let n = omac(c, &l, 0, self.nonce);
        let mut t = omac(c, &l, 1, self.aad);
        xor_into(&mut t, &n);
        if self.mode == Mode::Seal {
            ctr(c, &n, self.buf);
            xor_into(&mut t, &omac(c, &l, 2, self.buf));
            self.tag = t;
            return;
        }
        xor_into(&mut t, &omac(c, &l, 2, self.buf));
        // Compare without an early exit.
        let diff = t
            .iter()
            .zip(self.tag.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        self.ok = diff == 0;
        if self.ok {
            ctr(c, &n, self.buf);
        }
    }
}

/// Runs one job with `cipher`'s backend; returns its tag and whether an opened
/// tag matched.
fn run<C: BlockCipher128>(
    cipher: &C,
    mode: Mode,
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

impl<C: BlockCipher128 + KeyInit> Eax<C> {
    /// EAX with `key`; [`Error::ValueOutOfRange`] unless it is the cipher's key
    /// length.
    pub fn new_from_slice(key: &[u8]) -> Result<Self, Error> {
        let cipher = C::new_from_slice(key).map_err(|_| Error::ValueOutOfRange)?;
        Ok(Self { cipher })
    }
}

impl<C: BlockCipher128> Eax<C> {
    /// EAX over an already keyed `cipher`.
    pub const fn from_cipher(cipher: C) -> Self {
        Self { cipher }
    }

    /// The block cipher.
    pub const fn cipher(&self) -> &C {
        &self.cipher
    }

    /// Encrypts `buf` in place; returns the 16-byte tag.
    pub fn seal(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> [u8; BLOCK] {
        run(&self.cipher, Mode::Seal, nonce, aad, buf, Blk::default())
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
        if run(&self.cipher, Mode::Open, nonce, aad, buf, tag.into()).1 {
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
            let tag = Eax::<Speck128_128>::new_from_slice(&key)
                .unwrap()
                .seal(&nonce, b"hd", &mut buf);
            let mut want = msg.clone();
            let want_tag = ::eax::Eax::<Speck128_128>::new_from_slice(&key)
                .unwrap()
                .encrypt_inout_detached(&nonce.into(), b"hd", want.as_mut_slice().into())
                .unwrap();
            assert_eq!(buf, want);
            assert_eq!(tag.as_slice(), want_tag.as_slice());
        }
    }
}
