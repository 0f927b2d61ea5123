//! VSEG v2 audio: the audio track description at the end of the stream
//! record, and the audio record (kind 5) that follows a media chunk with the
//! audio samples received while it was recorded. Byte layout in
//! `docs/format.md` ("VSEG v2: audio").

use super::ByteReader;

/// Codec of a recording's audio track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC (RTP `mpeg4-generic`): raw access units, no ADTS headers.
    Aac = 1,
    /// G.711 A-law (RTP `PCMA`): one byte per sample and channel.
    Pcma = 2,
    /// G.711 mu-law (RTP `PCMU`): one byte per sample and channel.
    Pcmu = 3,
}

impl AudioCodec {
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Pcma => "pcma",
            AudioCodec::Pcmu => "pcmu",
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Aac),
            2 => Some(Self::Pcma),
            3 => Some(Self::Pcmu),
            _ => None,
        }
    }
}

/// The audio track of a v2 recording (the optional tail of its stream record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    pub codec: AudioCodec,
    /// Samples per second; also the timescale of audio timestamps.
    pub sample_rate: u32,
    pub channels: u8,
    /// AAC: the AudioSpecificConfig (ISO/IEC 14496-3); empty for G.711.
    pub config: Vec<u8>,
}

/// Largest AudioSpecificConfig accepted (real ones are 2 to 5 bytes).
const MAX_AUDIO_CONFIG: usize = 64;

impl AudioTrack {
    pub(super) fn encode_into(&self, b: &mut Vec<u8>) {
        b.push(self.codec as u8);
        b.extend_from_slice(&self.sample_rate.to_be_bytes());
        b.push(self.channels);
        b.extend_from_slice(&(self.config.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.config);
    }

    pub(super) fn decode(r: &mut ByteReader<'_>) -> Result<Self, String> {
        let c = r.u8()?;
        let codec = AudioCodec::from_u8(c).ok_or_else(|| format!("unknown audio codec {c}"))?;
        let sample_rate = r.u32()?;
        if sample_rate == 0 || sample_rate > 384_000 {
            return Err(format!("audio sample rate {sample_rate} out of range"));
        }
        let channels = r.u8()?;
        if channels == 0 || channels > 8 {
            return Err(format!("audio channel count {channels} out of range"));
        }
        let n = r.u32()? as usize;
        if n > MAX_AUDIO_CONFIG {
            return Err(format!("audio config of {n} bytes"));
        }
        let config = r.take(n)?.to_vec();
        if (codec == AudioCodec::Aac) == config.is_empty() {
            return Err("AAC needs its AudioSpecificConfig, G.711 has none".into());
        }
        Ok(AudioTrack {
            codec,
            sample_rate,
            channels,
            config,
        })
    }
}

/// One audio sample (an AAC access unit, or a run of G.711 samples).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSampleMeta {
    /// In audio timescale units (samples).
    pub duration: u32,
    pub size: u32,
}

pub const AUDIO_SAMPLE_ENTRY_LEN: usize = 8;
const AUDIO_CHUNK_HEAD_LEN: usize = 4 + 8 + 8;

/// Audio record plaintext: `u32 m, i64 first_pts, i64 first_video_pts,
/// m x (u32 duration, u32 size), data`.
#[derive(Debug, PartialEq, Eq)]
pub struct AudioChunk<'a> {
    /// Audio time of the first sample (audio timescale).
    pub first_pts: i64,
    /// The first sample's time on the recording's video timeline (video
    /// timescale): where the audio plays against the frames.
    pub first_video_pts: i64,
    pub samples: Vec<AudioSampleMeta>,
    pub data: &'a [u8],
}

impl<'a> AudioChunk<'a> {
    /// Writes an audio record's plaintext into `buf` (cleared first).
    pub fn encode_into(
        first_pts: i64,
        first_video_pts: i64,
        samples: &[AudioSampleMeta],
        datas: &[&[u8]],
        buf: &mut Vec<u8>,
    ) {
        buf.clear();
        let total: usize = datas.iter().map(|d| d.len()).sum();
        buf.reserve(AUDIO_CHUNK_HEAD_LEN + samples.len() * AUDIO_SAMPLE_ENTRY_LEN + total + super::TAG_LEN);
        buf.extend_from_slice(&(samples.len() as u32).to_be_bytes());
        buf.extend_from_slice(&first_pts.to_be_bytes());
        buf.extend_from_slice(&first_video_pts.to_be_bytes());
        for s in samples {
            buf.extend_from_slice(&s.duration.to_be_bytes());
            buf.extend_from_slice(&s.size.to_be_bytes());
        }
        for d in datas {
            buf.extend_from_slice(d);
        }
    }

    pub fn decode(b: &'a [u8]) -> Result<Self, String> {
        let mut r = ByteReader(b);
        let n = r.u32()? as usize;
        let first_pts = r.i64()?;
        let first_video_pts = r.i64()?;
        if n == 0 || n.saturating_mul(AUDIO_SAMPLE_ENTRY_LEN) > r.0.len() {
            return Err(format!("bad audio sample count {n}"));
        }
        let mut samples = Vec::with_capacity(n);
        let mut total = 0usize;
        for _ in 0..n {
            let duration = r.u32()?;
            let size = r.u32()?;
            if duration == 0 {
                return Err("audio sample of zero duration".into());
            }
            total = total.saturating_add(size as usize);
            samples.push(AudioSampleMeta { duration, size });
        }
        if total != r.0.len() {
            return Err(format!(
                "audio sample sizes sum to {total}, data is {} bytes",
                r.0.len()
            ));
        }
        Ok(AudioChunk {
            first_pts,
            first_video_pts,
            samples,
            data: r.0,
        })
    }

    /// Iterates `(audio pts, meta, data)`.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &AudioSampleMeta, &'a [u8])> + '_ {
        let mut pts = self.first_pts;
        let mut off = 0usize;
        self.samples.iter().map(move |s| {
            let d = &self.data[off..off + s.size as usize];
            let p = pts;
            off += s.size as usize;
            pts = pts.saturating_add(i64::from(s.duration));
            (p, s, d)
        })
    }

    /// Audio time after the last sample.
    pub fn end_pts(&self) -> i64 {
        self.samples
            .iter()
            .fold(self.first_pts, |t, s| t.saturating_add(i64::from(s.duration)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn track_round_trips_and_rejects_nonsense() {
        for t in [
            AudioTrack {
                codec: AudioCodec::Aac,
                sample_rate: 48_000,
                channels: 2,
                config: vec![0x11, 0x90],
            },
            AudioTrack {
                codec: AudioCodec::Pcmu,
                sample_rate: 8_000,
                channels: 1,
                config: vec![],
            },
        ] {
            let mut b = Vec::new();
            t.encode_into(&mut b);
            let mut r = ByteReader(&b);
            assert_eq!(AudioTrack::decode(&mut r).unwrap(), t);
            assert!(r.end().is_ok());
        }
        for bad in [
            &[9u8, 0, 0, 31, 64, 1, 0, 0, 0, 0][..],
            &[1, 0, 0, 31, 64, 1, 0, 0, 0, 0],
            &[2, 0, 0, 31, 64, 0, 0, 0, 0, 0],
        ] {
            assert!(AudioTrack::decode(&mut ByteReader(bad)).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn audio_chunk_round_trip(samples in proptest::collection::vec((1u32..5000, proptest::collection::vec(any::<u8>(), 0..200)), 1..30), pts in any::<i32>(), vpts in any::<i32>()) {
            let metas: Vec<AudioSampleMeta> = samples.iter().map(|(d, b)| AudioSampleMeta { duration: *d, size: b.len() as u32 }).collect();
            let refs: Vec<&[u8]> = samples.iter().map(|(_, b)| b.as_slice()).collect();
            let mut buf = Vec::new();
            AudioChunk::encode_into(i64::from(pts), i64::from(vpts), &metas, &refs, &mut buf);
            let c = AudioChunk::decode(&buf).unwrap();
            prop_assert_eq!(&c.samples, &metas);
            prop_assert_eq!(c.first_video_pts, i64::from(vpts));
            let back: Vec<&[u8]> = c.iter().map(|(_, _, d)| d).collect();
            prop_assert_eq!(back, refs);
        }

        #[test]
        fn audio_chunk_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AudioChunk::decode(&b);
        }
    }
}
