//! Fragmented MP4 (ISO BMFF) writing: an init segment (`ftyp` + `moov` with
//! `mvex`) and one `moof`+`mdat` fragment per chunk. Memory is bounded by one
//! fragment whatever the length of the export, and the same fragments can
//! feed a browser's Media Source Extensions.

use std::io::{self, Write};

/// Writes a box: 32-bit size, fourcc, body.
fn bx(buf: &mut Vec<u8>, fourcc: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(fourcc);
    body(buf);
    let size = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: size, fourcc, version, 24-bit flags, body.
fn full(buf: &mut Vec<u8>, fourcc: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    bx(buf, fourcc, |b| {
        b.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(b);
    });
}

fn u16b(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u32b(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u64b(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// A VisualSampleEntry box (ISO/IEC 14496-12 12.1.3) with its child boxes.
fn visual_sample_entry(fourcc: &[u8; 4], width: u16, height: u16, children: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    bx(&mut b, fourcc, |b| {
        b.extend_from_slice(&[0; 6]); // reserved
        u16b(b, 1); // data_reference_index
        b.extend_from_slice(&[0; 16]); // pre_defined, reserved
        u16b(b, width);
        u16b(b, height);
        u32b(b, 0x0048_0000); // 72 dpi
        u32b(b, 0x0048_0000);
        u32b(b, 0);
        u16b(b, 1); // frame_count
        b.extend_from_slice(&[0; 32]); // compressorname
        u16b(b, 0x0018); // depth
        u16b(b, 0xffff); // pre_defined = -1
        children(b);
    });
    b
}

/// `avc1` with its `avcC` (the body from `annexb::avc_config`).
pub fn avc1_sample_entry(width: u16, height: u16, avc_config: &[u8]) -> Vec<u8> {
    visual_sample_entry(b"avc1", width, height, |b| {
        bx(b, b"avcC", |b| b.extend_from_slice(avc_config))
    })
}

/// Motion JPEG: the QuickTime `jpeg` entry, which ffmpeg, VLC and GStreamer
/// read from MP4 as well; every sample is a complete JPEG image.
pub fn jpeg_sample_entry(width: u16, height: u16) -> Vec<u8> {
    visual_sample_entry(b"jpeg", width, height, |_| {})
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

pub struct TrackInfo<'a> {
    pub timescale: u32,
    pub width: u16,
    pub height: u16,
    /// Duration of the whole export in `timescale` units (for `mehd`), 0 if unknown.
    pub duration: u64,
    /// Complete VisualSampleEntry boxes; fragments pick one by 1-based index.
    pub sample_entries: &'a [Vec<u8>],
}

/// The audio track of an export: its timescale (the sample rate) and its
/// AudioSampleEntry box ([`aac_sample_entry`], [`g711_sample_entry`]).
pub struct AudioTrackInfo<'a> {
    pub timescale: u32,
    pub sample_entry: &'a [u8],
}

/// The MP4 track id of the video track; the audio track, if any, is 2.
pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;

/// `ftyp` + `moov` for one video track.
pub fn init_segment(t: &TrackInfo<'_>) -> Vec<u8> {
    init_segment_with_audio(t, None)
}

/// `ftyp` + `moov` for one video track (id 1) and, if given, one audio
/// track (id 2) whose fragments [`write_audio_fragment`] writes.
pub fn init_segment_with_audio(t: &TrackInfo<'_>, audio: Option<&AudioTrackInfo<'_>>) -> Vec<u8> {
    let mut b = Vec::with_capacity(1024);
    bx(&mut b, b"ftyp", |b| {
        b.extend_from_slice(b"iso5");
        u32b(b, 512);
        for brand in [b"iso5", b"iso6", b"mp41", b"isom"] {
            b.extend_from_slice(brand);
        }
    });
    bx(&mut b, b"moov", |b| {
        full(b, b"mvhd", 1, 0, |b| {
            u64b(b, 0);
            u64b(b, 0);
            u32b(b, t.timescale);
            u64b(b, t.duration);
            u32b(b, 0x0001_0000); // rate 1.0
            u16b(b, 0x0100); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            MATRIX.iter().for_each(|&m| u32b(b, m));
            b.extend_from_slice(&[0; 24]);
            u32b(b, if audio.is_some() { 3 } else { 2 }); // next track id
        });
        trak(
            b,
            &Trak {
                id: VIDEO_TRACK_ID,
                timescale: t.timescale,
                movie_duration: t.duration,
                duration: t.duration,
                width: t.width,
                height: t.height,
                sample_entries: t.sample_entries,
            },
        );
        if let Some(a) = audio {
            let duration = (u128::from(t.duration) * u128::from(a.timescale) / u128::from(t.timescale.max(1))) as u64;
            trak(
                b,
                &Trak {
                    id: AUDIO_TRACK_ID,
                    timescale: a.timescale,
                    movie_duration: t.duration,
                    duration,
                    width: 0,
                    height: 0,
                    sample_entries: std::slice::from_ref(&a.sample_entry.to_vec()),
                },
            );
        }
        bx(b, b"mvex", |b| {
            full(b, b"mehd", 1, 0, |b| u64b(b, t.duration));
            for id in [VIDEO_TRACK_ID, AUDIO_TRACK_ID]
                .into_iter()
                .take(1 + usize::from(audio.is_some()))
            {
                full(b, b"trex", 0, 0, |b| {
                    u32b(b, id);
                    u32b(b, 1); // default sample description index
                    u32b(b, 0);
                    u32b(b, 0);
                    u32b(b, 0);
                });
            }
        });
    });
    b
}

/// One track of the init segment; audio when `id` is [`AUDIO_TRACK_ID`].
struct Trak<'a> {
    id: u32,
    timescale: u32,
    /// In the movie's (the video's) timescale.
    movie_duration: u64,
    /// In the track's timescale.
    duration: u64,
    width: u16,
    height: u16,
    sample_entries: &'a [Vec<u8>],
}

fn trak(b: &mut Vec<u8>, t: &Trak<'_>) {
    let audio = t.id == AUDIO_TRACK_ID;
    bx(b, b"trak", |b| {
        full(b, b"tkhd", 1, 3, |b| {
            u64b(b, 0);
            u64b(b, 0);
            u32b(b, t.id);
            u32b(b, 0);
            u64b(b, t.movie_duration);
            b.extend_from_slice(&[0; 8]);
            u16b(b, 0); // layer
            u16b(b, u16::from(audio)); // alternate group
            u16b(b, if audio { 0x0100 } else { 0 }); // volume
            u16b(b, 0);
            MATRIX.iter().for_each(|&m| u32b(b, m));
            u32b(b, u32::from(t.width) << 16);
            u32b(b, u32::from(t.height) << 16);
        });
        bx(b, b"mdia", |b| {
            full(b, b"mdhd", 1, 0, |b| {
                u64b(b, 0);
                u64b(b, 0);
                u32b(b, t.timescale);
                u64b(b, t.duration);
                u16b(b, 0x55c4); // "und"
                u16b(b, 0);
            });
            full(b, b"hdlr", 0, 0, |b| {
                u32b(b, 0);
                b.extend_from_slice(if audio { b"soun" } else { b"vide" });
                b.extend_from_slice(&[0; 12]);
                b.extend_from_slice(if audio {
                    &b"Vigil audio\0"[..]
                } else {
                    &b"Vigil video\0"[..]
                });
            });
            bx(b, b"minf", |b| {
                if audio {
                    full(b, b"smhd", 0, 0, |b| u32b(b, 0));
                } else {
                    full(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                }
                bx(b, b"dinf", |b| {
                    full(b, b"dref", 0, 0, |b| {
                        u32b(b, 1);
                        full(b, b"url ", 0, 1, |_| {});
                    });
                });
                bx(b, b"stbl", |b| {
                    full(b, b"stsd", 0, 0, |b| {
                        u32b(b, t.sample_entries.len() as u32);
                        for e in t.sample_entries {
                            b.extend_from_slice(e);
                        }
                    });
                    full(b, b"stts", 0, 0, |b| u32b(b, 0));
                    full(b, b"stsc", 0, 0, |b| u32b(b, 0));
                    full(b, b"stsz", 0, 0, |b| {
                        u32b(b, 0);
                        u32b(b, 0);
                    });
                    full(b, b"stco", 0, 0, |b| u32b(b, 0));
                });
            });
        });
    });
}

/// An AudioSampleEntry box (ISO/IEC 14496-12 12.2.3) with its child boxes.
fn audio_sample_entry(
    fourcc: &[u8; 4],
    sample_rate: u32,
    channels: u8,
    children: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut b = Vec::with_capacity(96);
    bx(&mut b, fourcc, |b| {
        b.extend_from_slice(&[0; 6]); // reserved
        u16b(b, 1); // data_reference_index
        b.extend_from_slice(&[0; 8]); // reserved
        u16b(b, u16::from(channels));
        u16b(b, 16); // samplesize
        u32b(b, 0); // pre_defined, reserved
        u32b(b, if sample_rate < 65_536 { sample_rate << 16 } else { 0 });
        children(b);
    });
    b
}

/// An MPEG-4 descriptor: tag, one-byte length (bodies here are < 128 bytes), body.
fn descriptor(b: &mut Vec<u8>, tag: u8, body: &[u8]) {
    b.push(tag);
    b.push(body.len().min(127) as u8);
    b.extend_from_slice(&body[..body.len().min(127)]);
}

/// AAC: `mp4a` with its `esds` (ISO/IEC 14496-14) carrying the
/// AudioSpecificConfig `asc`.
pub fn aac_sample_entry(sample_rate: u32, channels: u8, asc: &[u8]) -> Vec<u8> {
    let asc = &asc[..asc.len().min(64)];
    let mut dcd = vec![0x40, 0x15, 0, 0, 0]; // MPEG-4 audio, audio stream, buffer size 0
    dcd.extend_from_slice(&[0; 8]); // max and average bit rate unknown
    descriptor(&mut dcd, 0x05, asc);
    let mut es = vec![0, 0, 0]; // ES_ID 0, no flags
    descriptor(&mut es, 0x04, &dcd);
    descriptor(&mut es, 0x06, &[0x02]); // SLConfig: predefined MP4
    audio_sample_entry(b"mp4a", sample_rate, channels, |b| {
        full(b, b"esds", 0, 0, |b| descriptor(b, 0x03, &es))
    })
}

/// G.711: the `alaw` / `ulaw` sample entries (QuickTime's, which ffmpeg,
/// VLC and GStreamer read from MP4), no child box.
pub fn g711_sample_entry(a_law: bool, sample_rate: u32, channels: u8) -> Vec<u8> {
    audio_sample_entry(if a_law { b"alaw" } else { b"ulaw" }, sample_rate, channels, |_| {})
}

pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub key: bool,
}

/// The length [`write_fragment`] writes for `samples` samples carrying
/// `data_len` bytes: moof (92 + 12 per sample) + mdat header + data.
pub fn fragment_len(samples: usize, data_len: u64) -> u64 {
    92 + 12 * samples as u64 + 8 + data_len
}

const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Writes one `moof` + `mdat` of the video track. `data` is the concatenated sample data.
pub fn write_fragment<W: Write>(
    out: &mut W,
    sequence: u32,
    base_decode_time: u64,
    sample_description_index: u32,
    samples: &[Sample],
    data: &[&[u8]],
) -> io::Result<u64> {
    track_fragment(
        out,
        VIDEO_TRACK_ID,
        sequence,
        base_decode_time,
        sample_description_index,
        samples,
        data,
    )
}

/// Writes one `moof` + `mdat` of the audio track (every sample a sync sample;
/// `base_decode_time` in the audio timescale).
pub fn write_audio_fragment<W: Write>(
    out: &mut W,
    sequence: u32,
    base_decode_time: u64,
    samples: &[Sample],
    data: &[&[u8]],
) -> io::Result<u64> {
    track_fragment(out, AUDIO_TRACK_ID, sequence, base_decode_time, 1, samples, data)
}

fn track_fragment<W: Write>(
    out: &mut W,
    track_id: u32,
    sequence: u32,
    base_decode_time: u64,
    sample_description_index: u32,
    samples: &[Sample],
    data: &[&[u8]],
) -> io::Result<u64> {
    let mut moof = Vec::with_capacity(64 + samples.len() * 12);
    let mut data_offset_pos = 0;
    bx(&mut moof, b"moof", |b| {
        full(b, b"mfhd", 0, 0, |b| u32b(b, sequence));
        bx(b, b"traf", |b| {
            // default-base-is-moof | sample-description-index-present
            full(b, b"tfhd", 0, 0x02_0002, |b| {
                u32b(b, track_id);
                u32b(b, sample_description_index);
            });
            full(b, b"tfdt", 1, 0, |b| u64b(b, base_decode_time));
            // data-offset | sample-duration | sample-size | sample-flags
            full(b, b"trun", 0, 0x00_0701, |b| {
                u32b(b, samples.len() as u32);
                data_offset_pos = b.len();
                u32b(b, 0);
                for s in samples {
                    u32b(b, s.duration);
                    u32b(b, s.size);
                    u32b(
                        b,
                        if s.key {
                            SAMPLE_FLAGS_SYNC
                        } else {
                            SAMPLE_FLAGS_NON_SYNC
                        },
                    );
                }
            });
        });
    });
    finish_fragment(out, moof, data_offset_pos, data)
}

/// Writes `moof` (its trun's data offset, at `data_offset_pos`, set to
/// just past the mdat header) and an `mdat` of `data`; returns the bytes
/// written.
fn finish_fragment<W: Write>(
    out: &mut W,
    mut moof: Vec<u8>,
    data_offset_pos: usize,
    data: &[&[u8]],
) -> io::Result<u64> {
    let data_offset = (moof.len() + 8) as u32;
    moof[data_offset_pos..data_offset_pos + 4].copy_from_slice(&data_offset.to_be_bytes());
    let total: usize = data.iter().map(|d| d.len()).sum();
    out.write_all(&moof)?;
    out.write_all(&((total + 8) as u32).to_be_bytes())?;
    out.write_all(b"mdat")?;
    for d in data {
        out.write_all(d)?;
    }
    Ok((moof.len() + 8 + total) as u64)
}

/// The length [`write_audio_run`] writes for samples whose table entries
/// and data take `table_and_data` bytes (8 per sample plus the data): a
/// moof of 92 bytes plus the 8-byte entries, an mdat header, the data. A
/// VSEG audio record's plaintext is its 20-byte head plus those same bytes,
/// so a view can size an audio fragment from the record's length alone.
pub fn audio_run_len(table_and_data: u64) -> u64 {
    100 + table_and_data
}

/// Writes one `moof` + `mdat` of the audio track with 8 bytes per sample
/// (duration and size; every sample a sync sample by the `tfhd` default),
/// `base_decode_time` in the audio timescale. Returns the bytes written,
/// which [`audio_run_len`] gives beforehand.
pub fn write_audio_run<W: Write>(
    out: &mut W,
    sequence: u32,
    base_decode_time: u64,
    samples: &[Sample],
    data: &[&[u8]],
) -> io::Result<u64> {
    let mut moof = Vec::with_capacity(96 + samples.len() * 8);
    let mut data_offset_pos = 0;
    bx(&mut moof, b"moof", |b| {
        full(b, b"mfhd", 0, 0, |b| u32b(b, sequence));
        bx(b, b"traf", |b| {
            // default-base-is-moof | default-sample-flags-present
            full(b, b"tfhd", 0, 0x02_0020, |b| {
                u32b(b, AUDIO_TRACK_ID);
                u32b(b, SAMPLE_FLAGS_SYNC);
            });
            full(b, b"tfdt", 1, 0, |b| u64b(b, base_decode_time));
            // data-offset | sample-duration | sample-size
            full(b, b"trun", 0, 0x00_0301, |b| {
                u32b(b, samples.len() as u32);
                data_offset_pos = b.len();
                u32b(b, 0);
                for s in samples {
                    u32b(b, s.duration);
                    u32b(b, s.size);
                }
            });
        });
    });
    finish_fragment(out, moof, data_offset_pos, data)
}

/// The RFC 6381 codec string of an AAC track for Media Source Extensions:
/// `mp4a.40.N`, N the audio object type of its AudioSpecificConfig (2 for
/// AAC-LC, the default when the config is unreadable).
pub fn aac_codec_string(asc: &[u8]) -> String {
    let object_type = match asc.first().map(|b| b >> 3) {
        Some(31) => asc
            .get(..2)
            .map(|b| 32 + ((u32::from(b[0]) & 0x07) << 3 | u32::from(b[1]) >> 5))
            .unwrap_or(2),
        Some(0) | None => 2,
        Some(t) => u32::from(t),
    };
    format!("mp4a.40.{object_type}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_len_is_what_write_fragment_writes() {
        for n in [1usize, 2, 25, 300] {
            let samples: Vec<Sample> = (0..n)
                .map(|i| Sample {
                    duration: 3600,
                    size: 10 + i as u32,
                    key: i == 0,
                })
                .collect();
            let datas: Vec<Vec<u8>> = samples.iter().map(|s| vec![0u8; s.size as usize]).collect();
            let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
            let mut out = Vec::new();
            let len = write_fragment(&mut out, 1, 0, 1, &samples, &refs).unwrap();
            let data: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
            assert_eq!(len, out.len() as u64);
            assert_eq!(fragment_len(n, data), len);
        }
    }

    #[test]
    fn audio_run_len_is_what_write_audio_run_writes() {
        for n in [1usize, 3, 50] {
            let samples: Vec<Sample> = (0..n)
                .map(|i| Sample {
                    duration: 1024,
                    size: 200 + i as u32,
                    key: true,
                })
                .collect();
            let datas: Vec<Vec<u8>> = samples.iter().map(|s| vec![7u8; s.size as usize]).collect();
            let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
            let mut out = Vec::new();
            let len = write_audio_run(&mut out, 2, 48_000, &samples, &refs).unwrap();
            let data: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
            assert_eq!(len, out.len() as u64);
            assert_eq!(audio_run_len(8 * n as u64 + data), len);
        }
    }

    #[test]
    fn aac_codec_strings() {
        assert_eq!(aac_codec_string(&[0x11, 0x90]), "mp4a.40.2");
        assert_eq!(aac_codec_string(&[0x2b, 0x92, 0x08, 0x00]), "mp4a.40.5");
        assert_eq!(aac_codec_string(&[]), "mp4a.40.2");
    }
}
