//! Feeds arbitrary bytes to every parser read; none may panic, and whatever decodes
//! must re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zepto_kernel::encoding;
use zepto_kernel::HeapMem;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut heap_mem = HeapMem::<512, 4>::new();
    let mut heap = heap_mem.heap();
    let Ok(h) = heap.alloc() else { return };
    if heap.set_request(h, body).is_err() {
        return;
    }
    let Ok(mut p) = heap.parser(h) else { return };
    let mut ops = selector;
    while !p.is_empty() {
        let max = (ops % 8) + 1;
        let before = p.position();
        let r = match ops % 7 {
            0 => p.u8(&heap).map(u64::from),
            1 => p.u16_le(&heap).map(u64::from),
            2 => p.uint(&heap, max),
            3 => p.sint(&heap, max).map(|v| v as u64),
            4 => p.half(&heap).map(|v| u64::from(v.to_bits())),
            5 => p.sub_parser(usize::from(max)).map(|_| 0),
            _ => p.u32_le(&heap).map(u64::from),
        };
        if ops % 7 == 2 {
            if let Ok(v) = r {
                let (buf, n) = encoding::uint_to_array(v, max).expect("decoded value re-encodes");
                assert_eq!(&buf[..n], &body[before..p.position()]);
            }
        }
        if r.is_err() {
            assert_eq!(
                p.position(),
                before,
                "a failed read must not move the parser"
            );
            if p.skip(&heap, 1).is_err() {
                break;
            }
        }
        ops = ops.rotate_left(1) ^ 0x5a;
    }
});
