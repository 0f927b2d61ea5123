//! Vigil's formats, and nothing else: the VSEG recording file (the one owner
//! of the on-disk format, see docs/format.md), fragmented MP4 writing and
//! reading, H.264 Annex B, the key types a recording names, the media
//! types that sources hand to the recorder, and the evidence bundle (its
//! manifest, file hashing, Ed25519 public keys and offline verifier).
//!
//! This crate has no database, no async runtime and no knowledge of the
//! daemon: the fuzz targets and the offline bundle verifier depend on it
//! alone, and the compiler keeps it that way.

pub mod annexb;
pub mod bundle;
pub mod keys;
pub mod media;
pub mod mp4;
pub mod mp4_demux;
pub mod vseg;

/// Lower-case hexadecimal of `b`.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// The bytes that hexadecimal text (either case) spells; None unless it is
/// an even number of hex digits and nothing else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    b.chunks_exact(2)
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(super::hex(&[]), "");
    }

    #[test]
    fn unhex_reads_hex_back_and_nothing_else() {
        assert_eq!(super::unhex("000fA0ff"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(super::unhex(""), Some(vec![]));
        for bad in ["abc", "+f", "0g", " 0f", "0x0f"] {
            assert_eq!(super::unhex(bad), None, "{bad}");
        }
    }
}
