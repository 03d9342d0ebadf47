//! Runs arbitrary sequences of heap operations; none may panic, and the heap's
//! accounting must stay consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::{Handle, HeapMem};

fuzz_target!(|data: &[u8]| {
    let mut heap_mem = HeapMem::<128, 4>::new();
    let mut heap = heap_mem.heap();
    let mut handles: [Option<Handle>; 4] = [None; 4];
    for chunk in data.chunks(3) {
        let (op, a, b) = match chunk {
            [op, a, b] => (*op, *a, *b),
            _ => return,
        };
        let slot = usize::from(a % 4);
        let payload = [b; 40];
        let n = usize::from(b % 41);
        match (op % 10, handles[slot]) {
            (0, None) => handles[slot] = heap.alloc().ok(),
            (1, Some(h)) => {
                heap.free(h).expect("live handle frees");
                handles[slot] = None;
            }
            (2, Some(h)) => drop(heap.append_reply(h, &payload[..n])),
            (3, Some(h)) => drop(heap.prepend_reply(h, &payload[..n])),
            (4, Some(h)) => drop(heap.set_request(h, &payload[..n])),
            (5, Some(h)) => drop(
                heap.convert_reply_to_request(h)
                    .expect("live handle converts"),
            ),
            (6, Some(h)) => heap.truncate_reply(h, n).expect("live handle truncates"),
            (7, Some(h)) => {
                if let Some(other) = handles[usize::from(b % 4)] {
                    let _ = heap.append_reply_of(h, other);
                }
            }
            (8, Some(h)) => {
                let (req, rep) = (heap.request_len(h).unwrap(), heap.reply_len(h).unwrap());
                let before = heap.request(h).unwrap()[n.min(req)..].to_vec();
                match heap.split_request(h, n) {
                    Ok(()) => assert_eq!(heap.reply(h).unwrap(), &before[..]),
                    Err(_) => assert!(rep > 0 || n > req),
                }
            }
            (9, Some(h)) => {
                let mut want = payload[..n].to_vec();
                want.extend_from_slice(heap.request(h).unwrap());
                let rep = heap.reply_len(h).unwrap();
                match heap.wrap_request(h, &payload[..n]) {
                    Ok(()) => {
                        assert_eq!(heap.reply(h).unwrap(), &want[..]);
                        assert_eq!(heap.request_len(h), Ok(0));
                    }
                    Err(_) => assert!(rep > 0 || heap.used_bytes() + n > heap.capacity()),
                }
            }
            _ => {}
        }
        let sum: usize = handles
            .iter()
            .flatten()
            .map(|h| heap.request_len(*h).unwrap_or(0) + heap.reply_len(*h).unwrap_or(0))
            .sum();
        assert_eq!(sum, heap.used_bytes());
        assert!(heap.used_bytes() <= heap.capacity());
    }
});
