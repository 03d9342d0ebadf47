//! Feeds arbitrary bytes to the SADLP decoder in chunks sized by the input; nothing
//! may panic, every packet out must fit the buffer and re-encode to a valid frame,
//! also in place; the whole input is also unframed in place.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::sadlp::{
    decode_in_place, decoder_buffer_len, encode, encode_in_place, encoded_len, Decoder,
};

const MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 32) + 1;
    let mut d = Decoder::<{ decoder_buffer_len(MAX) }>::new();
    let mut frames = 0u32;
    for c in body.chunks(chunk) {
        let mut rest = c;
        while !rest.is_empty() {
            let (used, p) = d.feed(rest);
            assert!(used > 0 && used <= rest.len());
            if let Some(p) = p {
                assert!(!p.is_empty() && p.len() <= MAX);
                let mut out = [0u8; encoded_len(MAX)];
                let n = encode(p, &mut out).expect("encode");
                let mut again = Decoder::<{ decoder_buffer_len(MAX) }>::new();
                let (_, q) = again.feed(&out[..n]);
                assert_eq!(q, Some(p));
                let mut inplace = [0u8; encoded_len(MAX)];
                inplace[..p.len()].copy_from_slice(p);
                assert_eq!(encode_in_place(&mut inplace, p.len()), Ok(n));
                assert_eq!(&inplace[..n], &out[..n]);
                frames += 1;
            }
            rest = &rest[used..];
        }
    }
    assert_eq!(d.stats().frames, frames);
    let mut whole = body.to_vec();
    if let Ok(n) = decode_in_place(&mut whole) {
        assert!(n + 2 <= body.len());
    }
});
