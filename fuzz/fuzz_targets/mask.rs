//! Differential: the word-at-a-time `apply_mask` against the byte loop
//! `apply_mask_naive`, whole and split in two at a random point.
//!
//! Input: 4 bytes of key, 4 bytes of offset, 2 bytes of split point, then
//! the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit_protocol::mask::{apply_mask, apply_mask_naive};

fuzz_target!(|data: &[u8]| {
    let Some((head, buf)) = data.split_first_chunk::<10>() else {
        return;
    };
    let key = [head[0], head[1], head[2], head[3]];
    // Any offset a payload can have (u32 keeps `offset + len` from overflowing).
    let offset = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let split = u16::from_le_bytes([head[8], head[9]]) as usize % (buf.len() + 1);

    let mut naive = buf.to_vec();
    apply_mask_naive(&mut naive, key, offset);

    // Whole buffer, one pass.
    let mut fast = buf.to_vec();
    apply_mask(&mut fast, key, offset);
    assert_eq!(
        fast,
        naive,
        "fast != naive (len {}, offset {offset})",
        buf.len()
    );

    // Two pieces with the right offsets equal one pass.
    let mut pieces = buf.to_vec();
    let (a, b) = pieces.split_at_mut(split);
    apply_mask(a, key, offset);
    apply_mask(b, key, offset + split);
    assert_eq!(pieces, naive, "split at {split} != one pass");

    // An unaligned start inside the buffer (slices need not be aligned).
    let mut tail = buf.to_vec();
    apply_mask(&mut tail[split..], key, offset + split);
    assert_eq!(tail[split..], naive[split..]);
    assert_eq!(tail[..split], buf[..split]);

    // Masking is an involution.
    apply_mask(&mut fast, key, offset);
    assert_eq!(fast, buf);
});
