//! AES-128 from a block in hardware (the nRF51/nRF52 ECB, an STM32 AES unit,
//! Zephyr's crypto API) as the SASP cipher.
//!
//! A port implements [`AesBlock`]: one function that encrypts a 16-byte block under a
//! 16-byte key. [`HardwareAes<A>`] turns it into a cipher that
//! [`Device`](crate::pump::Device), [`Sasp`](crate::sasp::Sasp) and
//! [`Eax`](crate::eax::Eax) accept wherever they take the software `aes::Aes128`:
//!
//! ```rust,ignore
//! type Dev<'t, 'p> = Device<'t, 'p, VmSmall<4, 8>, HardwareAes<NrfEcb>, 512, 6>;
//! ```
//!
//! It keeps the 16-byte key (the software cipher keeps its 176-byte expanded key)
//! and links no AES code; EAX and CMAC stay the kernel's, and the bytes on the wire
//! are the same as with the software cipher.

use core::marker::PhantomData;

use crate::cipher::{BlockCipher128, KeyInit128};

/// AES-128 in software (the `aes` crate): what SACCP's checksum uses unless the
/// port has AES in hardware.
pub type SoftAes = aes::Aes128;

/// An AES-128 block encryption supplied by the port.
///
/// It is called with the SASP key on every block; an implementation loads it into
/// the peripheral each time, or keeps the last key loaded. It must not fail: a
/// peripheral that can report an error (a busy crypto driver) has to retry or fall
/// back to software. No `unsafe` is needed in the kernel: register access stays in
/// the port.
pub trait AesBlock {
    /// Encrypts `block` in place under `key` (FIPS-197 AES-128).
    fn encrypt(key: &[u8; 16], block: &mut [u8; 16]);
}

/// AES-128 through the port's [`AesBlock`]: a cipher for SASP (see the module
/// documentation).
pub struct HardwareAes<A> {
    key: [u8; 16],
    block: PhantomData<A>,
}

impl<A> Clone for HardwareAes<A> {
    fn clone(&self) -> Self {
        Self {
            key: self.key,
            block: PhantomData,
        }
    }
}

impl<A> core::fmt::Debug for HardwareAes<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HardwareAes { .. }")
    }
}

impl<A> KeyInit128 for HardwareAes<A> {
    fn new(key: &[u8; 16]) -> Self {
        Self {
            key: *key,
            block: PhantomData,
        }
    }
}

impl<A: AesBlock> BlockCipher128 for HardwareAes<A> {
    fn encrypt(&self, block: &mut [u8; 16]) {
        A::encrypt(&self.key, block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eax::{cmac, Eax};
    use aes::Aes128;

    /// A stand-in for a hardware block: the software cipher, keyed per block.
    struct Soft;

    impl AesBlock for Soft {
        fn encrypt(key: &[u8; 16], block: &mut [u8; 16]) {
            <Aes128 as KeyInit128>::new(key).encrypt(block);
        }
    }

    /// FIPS-197 appendix C.1, through the hook.
    #[test]
    fn fips197_vector() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut block: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let c = HardwareAes::<Soft>::new(&key);
        c.encrypt(&mut block);
        assert_eq!(
            block,
            [
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
    }

    /// A device whose SASP runs on the hook answers a client on the software
    /// cipher: a program goes in, its reply comes out.
    #[test]
    fn device_on_the_hook_talks_to_a_software_client() {
        use crate::client::{Client, ClientConfig};
        use crate::nonce_store::BlankStart;
        use crate::plugins::{Bodypart, Echo};
        use crate::pump::{self, Device, DeviceConfig};
        use crate::testhal::TestHal;
        use crate::vm::insn::Instruction;
        use crate::vm::{VmConfig, VmSmall};

        let key = [0x42u8; 16];
        let cfg = DeviceConfig::default();
        let (mut dhal, mut chal) = (TestHal::<256>::new(1), TestHal::<256>::new(2));
        pump::provision_new_key::<HardwareAes<Soft>, _>(&mut dhal, &cfg, &key).unwrap();
        let mut echo = Echo;
        let mut table = [Bodypart::new(2, &mut echo)];
        let vm = VmSmall::<4, 4>::new(VmConfig::default());
        let mut dev =
            Device::<_, HardwareAes<Soft>, 512, 4>::new(&key, vm, &mut table, cfg, &mut dhal)
                .unwrap();
        let ccfg = ClientConfig {
            blank: BlankStart::Floor(0),
            ..ClientConfig::default()
        };
        let mut client = Client::<Aes128, 512, 4>::new(&key, &mut chal, ccfg).unwrap();
        let mut prog = [0u8; 16];
        let n = Instruction::Exec {
            bodypart: 2,
            data: b"hw",
        }
        .encode(&mut prog)
        .unwrap();
        let pkt = client.send_program(&mut chal, &prog[..n]).unwrap();
        dhal.push_rx(pkt).unwrap();
        dev.poll(&mut dhal);
        let reply = dhal.pop_tx().unwrap();
        client.receive(&mut chal, &reply).unwrap();
        // SACCP OK reply, frame: FLAGS-AND-SIZE (2 bytes, last header), body "hw".
        assert_eq!(client.reply(), &[0x30, 0x09, b'h', b'w']);
    }

    /// EAX and CMAC over the hook give the software cipher's bytes.
    #[test]
    fn same_bytes_as_software_aes() {
        let key = [0x5au8; 16];
        let nonce = [7u8; 16];
        for len in [0usize, 1, 16, 17, 64, 80] {
            let msg: Vec<u8> = (0..len as u8).collect();
            let (mut a, mut b) = (msg.clone(), msg.clone());
            let hw = Eax::<HardwareAes<Soft>>::new_from_slice(&key).unwrap();
            let sw = Eax::<Aes128>::new_from_slice(&key).unwrap();
            assert_eq!(hw.seal(&nonce, &[], &mut a), sw.seal(&nonce, &[], &mut b));
            assert_eq!(a, b);
            assert_eq!(
                cmac(&HardwareAes::<Soft>::new(&key), &msg),
                cmac(&<Aes128 as KeyInit128>::new(&key), &msg)
            );
        }
    }
}
