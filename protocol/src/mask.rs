//! Payload masking (RFC 6455 section 5.3): `payload[i] ^= key[(offset + i) % 4]`.
//!
//! [`apply_mask`] works a machine word at a time in safe code; the compiler
//! vectorises the fixed-size inner loop. [`apply_mask_naive`] is the byte loop
//! it is checked against (unit tests, the differential fuzz target, benches).

/// Unmasks (or masks) `buf` in place with `key`, where `buf` starts `offset`
/// bytes into the payload (for payloads processed in pieces).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that key[0] lines up with buf[0].
    let key = rotate(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        // Four independent words per iteration keep the vector units busy;
        // each block length is a multiple of 4, so the key phase is unchanged.
        for lane in block.chunks_exact_mut(8) {
            xor_word(lane, word);
        }
    }
    // Short payloads (most chat messages) still go a word at a time.
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for lane in &mut words {
        xor_word(lane, word);
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

fn xor_word(lane: &mut [u8], word: u64) {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(lane);
    lane.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
}

/// The byte-at-a-time reference for [`apply_mask`].
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) & 3];
    }
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_masked_hello() {
        // "A single-frame masked text message" (5.7): payload of 0x81 0x85 frame.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn fast_matches_naive_for_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..200 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                let mut naive = original.clone();
                apply_mask(&mut fast, key, offset);
                apply_mask_naive(&mut naive, key, offset);
                assert_eq!(fast, naive, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let original: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
        let mut buf = original.clone();
        apply_mask(&mut buf, [1, 2, 3, 4], 3);
        assert_ne!(buf, original);
        apply_mask(&mut buf, [1, 2, 3, 4], 3);
        assert_eq!(buf, original);
    }

    #[test]
    fn split_unmask_equals_whole() {
        let original: Vec<u8> = (0..100).map(|i| i as u8).collect();
        let key = [9, 8, 7, 6];
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        let mut split = original;
        let (a, b) = split.split_at_mut(37);
        apply_mask(a, key, 0);
        apply_mask(b, key, 37);
        assert_eq!(whole, split);
    }
}
