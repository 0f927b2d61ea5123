//! H.264 Annex B byte streams (what a UVC camera's H.264 format and a
//! libavcodec encoder emit) turned into what a recording stores: MP4 samples
//! of length-prefixed NAL units, with the parameter sets lifted out into the
//! `avcC` of the sample entry. Everything here is on camera input, so nothing
//! panics on a malformed stream; a frame that cannot be used is an error the
//! caller counts and skips.

/// NAL unit types that matter here (ITU-T H.264 table 7-1).
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// The NAL units of one access unit, start codes removed. Bytes before the
/// first start code are ignored (a stream joined mid-NAL).
pub fn nal_units(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(buf.len(), |&next| next - 3);
        // A 4-byte start code (00 00 00 01) leaves its leading zero behind;
        // trailing zero bytes are not part of a NAL unit either.
        while end > s && buf[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            units.push(&buf[s..end]);
        }
    }
    units.into_iter()
}

/// One access unit as the recorder takes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AccessUnit {
    /// Length-prefixed (4-byte big-endian) NAL units without parameter sets
    /// or access unit delimiters.
    pub sample: Vec<u8>,
    /// Contains an IDR slice.
    pub key: bool,
    /// The last SPS and PPS carried in-band, if any.
    pub sps: Option<Vec<u8>>,
    pub pps: Option<Vec<u8>>,
}

/// Splits an Annex B access unit. Fails on an access unit with no slice data.
pub fn access_unit(buf: &[u8]) -> Result<AccessUnit, String> {
    let mut au = AccessUnit::default();
    for nal in nal_units(buf) {
        let kind = nal[0] & 0x1f;
        match kind {
            NAL_SPS => au.sps = Some(nal.to_vec()),
            NAL_PPS => au.pps = Some(nal.to_vec()),
            NAL_AUD => {}
            _ => {
                if kind == NAL_IDR {
                    au.key = true;
                }
                let len = u32::try_from(nal.len()).map_err(|_| "NAL unit over 4 GiB".to_string())?;
                au.sample.extend_from_slice(&len.to_be_bytes());
                au.sample.extend_from_slice(nal);
            }
        }
    }
    if au.sample.is_empty() {
        return Err(format!(
            "no H.264 slice in a {}-byte buffer (not an Annex B stream?)",
            buf.len()
        ));
    }
    Ok(au)
}

/// The `avcC` body (ISO/IEC 14496-15 AVCDecoderConfigurationRecord) for one
/// SPS and one PPS, 4-byte lengths.
pub fn avc_config(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, String> {
    if sps.len() < 4 {
        return Err(format!("SPS of {} bytes is too short", sps.len()));
    }
    let sps_len = u16::try_from(sps.len()).map_err(|_| "SPS over 64 KiB".to_string())?;
    let pps_len = u16::try_from(pps.len()).map_err(|_| "PPS over 64 KiB".to_string())?;
    let mut c = Vec::with_capacity(11 + sps.len() + pps.len());
    c.extend_from_slice(&[1, sps[1], sps[2], sps[3], 0xff, 0xe1]);
    c.extend_from_slice(&sps_len.to_be_bytes());
    c.extend_from_slice(sps);
    c.push(1);
    c.extend_from_slice(&pps_len.to_be_bytes());
    c.extend_from_slice(pps);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let buf = [0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 1, 0x68, 4, 0, 0, 0, 1, 0x65, 9, 9, 0];
        let units: Vec<&[u8]> = nal_units(&buf).collect();
        assert_eq!(units, vec![&[0x67, 1, 2, 3][..], &[0x68, 4][..], &[0x65, 9, 9][..]]);
    }

    #[test]
    fn access_unit_lifts_parameter_sets_and_marks_idr() {
        let buf = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0xac, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x65, 0x88, 0x84,
        ];
        let au = access_unit(&buf).unwrap();
        assert!(au.key);
        assert_eq!(au.sps.as_deref(), Some(&[0x67, 0x64, 0, 0x1f, 0xac][..]));
        assert_eq!(au.pps.as_deref(), Some(&[0x68, 0xee][..]));
        assert_eq!(au.sample, vec![0, 0, 0, 3, 0x65, 0x88, 0x84]);
        let cfg = avc_config(au.sps.as_deref().unwrap(), au.pps.as_deref().unwrap()).unwrap();
        assert_eq!(&cfg[..4], &[1, 0x64, 0, 0x1f]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(access_unit(&[]).is_err());
        assert!(access_unit(&[0xff, 0xd8, 0xff]).is_err());
        assert!(access_unit(&[0, 0, 1]).is_err());
        assert!(access_unit(&[0, 0, 1, 0x67]).is_err());
        assert!(avc_config(&[0x67], &[0x68]).is_err());
    }
}
