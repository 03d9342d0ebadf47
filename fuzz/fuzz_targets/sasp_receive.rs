//! Feeds arbitrary packets to SASP receive on both ends. Nothing may panic; a
//! packet that is not authentic must be ignored and leave the nonces unchanged;
//! the first bytes of the input may also mutate a genuine packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::nonce_store::{BlankStart, NonceStore};
use zepto_kernel::sasp::{Role, Sasp};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::{HandlerOutcome, HeapMem};

const KEY: [u8; 16] = *b"zepto-fuzz-key!!";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Device
    } else {
        Role::Client
    };
    let mut hal = TestHal::<64>::new(1);
    let store = NonceStore::open(&mut hal, 0, 16, [0; 4], BlankStart::Floor(0)).expect("open");
    let mut me: Sasp = Sasp::new(&KEY, role, store).expect("key");
    let mut heap_mem = HeapMem::<1024, 4>::new();
    let mut heap = heap_mem.heap();
    let h = heap.alloc().expect("handle");
    let mut genuine = false;
    let packet: Vec<u8> = if mode & 2 == 0 {
        body.to_vec()
    } else {
        // A genuine packet from the peer, XORed with the input.
        let other = if role == Role::Device {
            Role::Client
        } else {
            Role::Device
        };
        let mut phal = TestHal::<64>::new(2);
        let pstore =
            NonceStore::open(&mut phal, 0, 16, [0; 4], BlankStart::Floor(0)).expect("open");
        let mut peer: Sasp = Sasp::new(&KEY, other, pstore).expect("key");
        heap.set_request(h, &[0x12, 1, 2, 3, 4, 5])
            .expect("request");
        peer.send(&mut heap, h, &mut phal).expect("send");
        let mut p = heap.reply(h).expect("reply").to_vec();
        genuine = body.iter().take(p.len()).all(|x| *x == 0);
        for (b, x) in p.iter_mut().zip(body) {
            *b ^= x;
        }
        p
    };
    if heap.set_request(h, &packet).is_err() {
        return;
    }
    let (nfs, nlw) = (me.nonces().nfs(), me.nonces().nlw());
    match me.receive(&mut heap, h, &mut hal) {
        Ok(HandlerOutcome::IgnorePacket) => {
            assert!(heap.reply(h).expect("reply").is_empty());
            assert_eq!(me.nonces().nlw(), nlw);
            assert!(me.nonces().nfs() >= nfs);
        }
        Ok(HandlerOutcome::Pass) => {
            // Only the untouched genuine packet can pass.
            assert!(genuine);
        }
        Ok(_) | Err(_) => {}
    }
});
