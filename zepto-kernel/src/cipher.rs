//! The block ciphers under SASP's EAX and SACCP's checksum, behind one small trait.
//!
//! [`BlockCipher128`] encrypts one 16-byte block, or two independent ones at once
//! ([`BlockCipher128::encrypt2`]); [`KeyInit128`] makes the cipher from a 16-byte
//! key. Implemented here for the `aes` crate's AES-128 and (with the `speck`
//! feature) the `speck-cipher` crate's Speck-128/128, and in [`crate::hwaes`] for an
//! AES block in hardware.
//!
//! AES comes from the `aes` crate's 0.8 line: its software cipher keeps the round
//! keys in the 32-bit form its two-block code reads and lends them to every call;
//! the 0.9 line keeps them as 16-bit words and copies them into a 352-byte 32-bit
//! array on every call (`docs/decisions.md`, "AES from the `aes` crate's 0.8
//! line").

use aes::cipher::consts::U16;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{BlockBackend, BlockClosure, BlockEncrypt, BlockSizeUser, ParBlocks};

/// A 128-bit block cipher, encrypting in place.
pub trait BlockCipher128 {
    /// Encrypts `block` in place.
    fn encrypt(&self, block: &mut [u8; 16]);

    /// Encrypts two independent blocks in place: in one pass where the cipher
    /// works on two blocks at a time (the `aes` crate's software AES on 32-bit
    /// CPUs, where one block costs as much as two), else one after the other.
    fn encrypt2(&self, a: &mut [u8; 16], b: &mut [u8; 16]) {
        self.encrypt(a);
        self.encrypt(b);
    }
}

/// A cipher made from a 128-bit key.
pub trait KeyInit128: Sized {
    /// The cipher with `key` (expanded as the cipher needs).
    fn new(key: &[u8; 16]) -> Self;
}

impl BlockCipher128 for aes::Aes128 {
    fn encrypt(&self, block: &mut [u8; 16]) {
        self.encrypt_block(block.into());
    }

    fn encrypt2(&self, a: &mut [u8; 16], b: &mut [u8; 16]) {
        self.encrypt_with_backend(Pair(a, b));
    }
}

impl KeyInit128 for aes::Aes128 {
    fn new(key: &[u8; 16]) -> Self {
        aes::cipher::KeyInit::new(key.into())
    }
}

/// Two blocks for the cipher's backend: one batch where it works in pairs.
struct Pair<'a>(&'a mut [u8; 16], &'a mut [u8; 16]);

impl BlockSizeUser for Pair<'_> {
    type BlockSize = U16;
}

impl BlockClosure for Pair<'_> {
    fn call<B: BlockBackend<BlockSize = U16>>(self, backend: &mut B) {
        let Pair(a, b) = self;
        if B::ParBlocksSize::USIZE != 2 {
            backend.proc_block(<&mut GenericArray<u8, U16>>::from(a).into());
            backend.proc_block(<&mut GenericArray<u8, U16>>::from(b).into());
            return;
        }
        let mut par = ParBlocks::<B>::default();
        let mut blocks = par.iter_mut();
        if let (Some(x), Some(y)) = (blocks.next(), blocks.next()) {
            x.copy_from_slice(a);
            y.copy_from_slice(b);
        }
        backend.proc_par_blocks((&mut par).into());
        let mut blocks = par.iter();
        if let (Some(x), Some(y)) = (blocks.next(), blocks.next()) {
            a.copy_from_slice(x);
            b.copy_from_slice(y);
        }
    }
}

#[cfg(feature = "speck")]
impl BlockCipher128 for speck_cipher::Speck128_128 {
    fn encrypt(&self, block: &mut [u8; 16]) {
        use speck_cipher::cipher::BlockCipherEncrypt;
        let mut b = speck_cipher::cipher::Array::from(*block);
        self.encrypt_block(&mut b);
        *block = b.into();
    }
}

#[cfg(feature = "speck")]
impl KeyInit128 for speck_cipher::Speck128_128 {
    fn new(key: &[u8; 16]) -> Self {
        speck_cipher::cipher::KeyInit::new(&(*key).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS-197 appendix C.1, one block and two at once.
    #[test]
    fn aes_fips197() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let want = [
            0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
            0xc5, 0x5a,
        ];
        let aes = <aes::Aes128 as KeyInit128>::new(&key);
        let mut one = plain;
        aes.encrypt(&mut one);
        assert_eq!(one, want);
        let (mut a, mut b) = ([0u8; 16], plain);
        aes.encrypt2(&mut a, &mut b);
        assert_eq!(b, want);
        let mut z = [0u8; 16];
        aes.encrypt(&mut z);
        assert_eq!(a, z);
    }

    /// A backend that works on two blocks at once, as the `aes` crate's software
    /// AES does on 32-bit CPUs (a PC's AES instructions take eight): counts its
    /// batches.
    struct TwoAtOnce {
        aes: aes::Aes128,
        batches: usize,
    }

    impl BlockSizeUser for TwoAtOnce {
        type BlockSize = U16;
    }

    impl aes::cipher::ParBlocksSizeUser for TwoAtOnce {
        type ParBlocksSize = aes::cipher::consts::U2;
    }

    impl BlockBackend for TwoAtOnce {
        fn proc_block(
            &mut self,
            mut block: aes::cipher::inout::InOut<'_, '_, GenericArray<u8, U16>>,
        ) {
            let mut b: [u8; 16] = block.clone_in().into();
            self.aes.encrypt(&mut b);
            *block.get_out() = b.into();
        }

        fn proc_par_blocks(
            &mut self,
            mut blocks: aes::cipher::inout::InOut<'_, '_, ParBlocks<Self>>,
        ) {
            self.batches += 1;
            let mut all = blocks.clone_in();
            for b in all.iter_mut() {
                let mut x: [u8; 16] = (*b).into();
                self.aes.encrypt(&mut x);
                *b = x.into();
            }
            *blocks.get_out() = all;
        }
    }

    /// Where the backend works in pairs, the two blocks go to it as one batch and
    /// come back encrypted, each in its place.
    #[test]
    fn pair_goes_as_one_batch() {
        let aes = <aes::Aes128 as KeyInit128>::new(&[9; 16]);
        let (mut a, mut b) = ([1u8; 16], [2u8; 16]);
        let (mut want_a, mut want_b) = (a, b);
        aes.encrypt(&mut want_a);
        aes.encrypt(&mut want_b);
        let mut backend = TwoAtOnce { aes, batches: 0 };
        Pair(&mut a, &mut b).call(&mut backend);
        assert_eq!(backend.batches, 1);
        assert_eq!((a, b), (want_a, want_b));
    }

    /// Speck-128/128 through the trait gives the `speck-cipher` crate's own bytes.
    #[cfg(feature = "speck")]
    #[test]
    fn speck_through_the_trait_is_the_crate() {
        use speck_cipher::cipher::{BlockCipherEncrypt, KeyInit};
        let key: [u8; 16] = core::array::from_fn(|i| i as u8 * 3 + 1);
        let theirs = <speck_cipher::Speck128_128 as KeyInit>::new(&key.into());
        let ours = <speck_cipher::Speck128_128 as KeyInit128>::new(&key);
        let mut a = [0x5au8; 16];
        let mut b = speck_cipher::cipher::Array::from(a);
        theirs.encrypt_block(&mut b);
        ours.encrypt(&mut a);
        assert_eq!(a, <[u8; 16]>::from(b));
    }
}
