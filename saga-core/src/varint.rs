//! LEB128 varints (7 bits a byte, low first, the high bit set on every byte but the
//! last), as the stored encodings use them: a closed history's frame (history.rs) and
//! the events log's sealed blocks (oms/src/events/log.rs).

/// Appends `v`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at `*at`, moving `at` past it; None if `raw` ends first or it is longer
/// than a u64's.
pub fn read(raw: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *raw.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_is_put_reads_back_and_a_cut_one_does_not() {
        let values = [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let mut raw = Vec::new();
        for v in values {
            super::put(&mut raw, v);
        }
        let mut at = 0;
        for v in values {
            assert_eq!(super::read(&raw, &mut at), Some(v));
        }
        assert_eq!(at, raw.len());
        // The last (u64::MAX, ten bytes) cut short by one.
        let cut = &raw[..raw.len() - 1];
        let mut at = 0;
        for v in &values[..values.len() - 1] {
            assert_eq!(super::read(cut, &mut at), Some(*v));
        }
        assert_eq!(super::read(cut, &mut at), None);
    }
}
