//! (feature `ffmpeg`) The H.265 → H.264 converter of `transcode.rs`:
//! samples (length-prefixed NAL units) become Annex B with the `hvcC`'s
//! parameter sets before each key frame, go through libavcodec's hevc
//! decoder, are scaled to at most 1280 px wide and encoded by
//! `encoder.rs` (hardware first), a key frame wherever the source has one;
//! the output comes back as MP4 samples with an `avc1` sample entry, in the
//! source's media time. Also what the shared live converter does with each
//! frame.

use std::sync::Arc;

use bytes::Bytes;
use ffmpeg_next as ff;
use vigil_format::media::StreamParams;
use vigil_format::vseg::Codec;

use super::{hvcc_parameter_sets, output_size, sample_to_annexb};
use crate::ingest::encoder::{H264Encoder, Packet, Picture};
use crate::ingest::live::LiveFrame;

/// Frame rate the encoder is told (its rate control's hint; key frames
/// follow the source's).
const ASSUMED_FPS: u32 = 25;

/// One converted frame.
pub struct Converted {
    pub pts: i64,
    pub key: bool,
    /// Length-prefixed NAL units without parameter sets.
    pub data: Vec<u8>,
    pub params: Arc<StreamParams>,
}

/// An H.265 stream's converter to H.264; one per stream (it keeps the
/// decoder's reference pictures).
pub struct H265ToH264 {
    decoder: ff::decoder::Video,
    encoder: Option<H264Encoder>,
    parameter_sets: Vec<u8>,
    length_size: usize,
    timescale: u32,
    params: Option<Arc<StreamParams>>,
    /// The output's width and height, once the encoder is open.
    size: (u16, u16),
    picture: ff::frame::Video,
    annexb: Vec<u8>,
}

impl H265ToH264 {
    /// A converter for samples described by `sample_entry` (an `hvc1`/`hev1`
    /// with its `hvcC`), pts in `timescale` units.
    pub fn new(sample_entry: &[u8], timescale: u32) -> Result<Self, String> {
        let (parameter_sets, length_size) =
            hvcc_parameter_sets(sample_entry).ok_or("the stream's sample entry has no usable hvcC")?;
        ff::init().map_err(|e| format!("libavcodec: {e}"))?;
        ff::util::log::set_level(ff::util::log::Level::Fatal);
        let codec = ff::decoder::find(ff::codec::Id::HEVC).ok_or("this libavcodec has no H.265 decoder")?;
        let decoder = ff::codec::context::Context::new_with_codec(codec)
            .decoder()
            .video()
            .map_err(|e| format!("H.265 decoder: {e}"))?;
        Ok(H265ToH264 {
            decoder,
            encoder: None,
            parameter_sets,
            length_size,
            timescale: timescale.max(1),
            params: None,
            size: (0, 0),
            picture: ff::frame::Video::empty(),
            annexb: Vec::new(),
        })
    }

    /// The encoder in use, once the first picture has been decoded.
    pub fn encoder_name(&self) -> Option<&'static str> {
        self.encoder.as_ref().map(|e| e.name)
    }

    /// Converts one source frame; returns the frames the codecs have ready
    /// (none at first, one per frame after).
    pub fn push(&mut self, pts: i64, key: bool, data: &[u8]) -> Result<Vec<Converted>, String> {
        self.annexb.clear();
        if key {
            self.annexb.extend_from_slice(&self.parameter_sets);
        }
        sample_to_annexb(data, self.length_size, &mut self.annexb).ok_or("a malformed H.265 sample")?;
        let mut packet = ff::Packet::copy(&self.annexb);
        packet.set_pts(Some(pts));
        if key {
            packet.set_flags(ff::packet::Flags::KEY);
        }
        self.decoder
            .send_packet(&packet)
            .map_err(|e| format!("H.265 decoder: {e}"))?;
        self.drain()
    }

    /// Ends the stream: what the codecs still hold.
    pub fn finish(&mut self) -> Result<Vec<Converted>, String> {
        let _ = self.decoder.send_eof();
        let mut out = self.drain()?;
        if let Some(enc) = self.encoder.as_mut() {
            for p in enc.finish()? {
                out.extend(package(&mut self.params, &p, self.timescale, self.size)?);
            }
        }
        Ok(out)
    }

    fn drain(&mut self) -> Result<Vec<Converted>, String> {
        let mut out = Vec::new();
        while self.decoder.receive_frame(&mut self.picture).is_ok() {
            let pic = Picture {
                format: self.picture.format(),
                width: self.picture.width(),
                height: self.picture.height(),
            };
            if self.encoder.is_none() {
                let size = output_size(pic.width, pic.height);
                self.size = (
                    u16::try_from(size.0).map_err(|_| "picture too wide")?,
                    u16::try_from(size.1).map_err(|_| "picture too high")?,
                );
                self.encoder = Some(H264Encoder::scaling(pic, size, ASSUMED_FPS, self.timescale)?);
            }
            let Some(enc) = self.encoder.as_mut() else { continue };
            let pts = self.picture.pts().or(self.picture.timestamp()).unwrap_or(0);
            let key = self.picture.is_key();
            for p in enc.encode_picture(&self.picture, pts, key)? {
                out.extend(package(&mut self.params, &p, self.timescale, self.size)?);
            }
        }
        Ok(out)
    }
}

/// An encoded packet as a sample; the parameters follow its in-band SPS and
/// PPS. None for a frame before the first parameter sets.
fn package(
    params: &mut Option<Arc<StreamParams>>,
    p: &Packet,
    timescale: u32,
    (w, h): (u16, u16),
) -> Result<Option<Converted>, String> {
    let au = vigil_format::annexb::access_unit(&p.data)?;
    if let (Some(sps), Some(pps)) = (&au.sps, &au.pps) {
        let config = vigil_format::annexb::avc_config(sps, pps)?;
        let entry = vigil_format::mp4::avc1_sample_entry(w, h, &config);
        if params.as_ref().is_none_or(|p| p.sample_entry != entry) {
            *params = Some(Arc::new(StreamParams {
                codec: Codec::H264,
                timescale,
                width: w,
                height: h,
                sample_entry: entry,
            }));
        }
    }
    Ok(params.clone().map(|params| Converted {
        pts: p.pts,
        key: au.key,
        data: au.sample,
        params,
    }))
}

/// One key frame (`data`, described by `params`) as one H.264 frame.
pub fn one_picture(params: &StreamParams, data: &[u8]) -> Result<Converted, String> {
    let mut c = H265ToH264::new(&params.sample_entry, params.timescale)?;
    let mut out = c.push(0, true, data)?;
    out.extend(c.finish()?);
    out.into_iter()
        .find(|f| f.key)
        .ok_or_else(|| "the key frame did not decode".to_string())
}

/// A camera's live stream converted frame by frame (for `pump_live` in
/// `transcode.rs`): from the first key frame on, and again from a key frame
/// after frames were lost; it ends when the camera's parameters change.
#[derive(Default)]
pub struct LiveConversion {
    conv: Option<(Arc<StreamParams>, H265ToH264)>,
    /// Frames are dropped until the next key frame.
    behind: bool,
    started: bool,
}

impl super::LiveConverter for LiveConversion {
    fn convert(&mut self, f: LiveFrame) -> Result<Option<Vec<LiveFrame>>, String> {
        if (self.behind || !self.started) && !f.key {
            return Ok(Some(Vec::new()));
        }
        self.behind = false;
        self.started = true;
        let c = match &mut self.conv {
            Some((p, c)) if Arc::ptr_eq(p, &f.params) || **p == *f.params => c,
            Some(_) => return Ok(None), // new parameters: viewers reconnect to a new converter
            None => {
                if f.params.codec != Codec::H265 {
                    return Err("the camera's stream is not H.265".into());
                }
                let c = H265ToH264::new(&f.params.sample_entry, f.params.timescale)?;
                &mut self.conv.insert((f.params.clone(), c)).1
            }
        };
        let out = c.push(f.pts, f.key, &f.data)?;
        Ok(Some(
            out.into_iter()
                .map(|out| LiveFrame {
                    pts: out.pts,
                    key: out.key,
                    data: Bytes::from(out.data),
                    params: out.params,
                    audio: None,
                })
                .collect(),
        ))
    }

    fn lost(&mut self) {
        self.behind = true; // the pictures in between are lost: restart at a key frame
    }
}

/// The encoder a conversion would use on this box (opens a small one).
pub fn probe_encoder() -> Option<&'static str> {
    let pic = Picture {
        format: ff::format::Pixel::YUV420P,
        width: 320,
        height: 240,
    };
    H264Encoder::scaling(pic, (320, 240), ASSUMED_FPS, 90_000)
        .ok()
        .map(|e| e.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample: pts, key, length-prefixed NAL units.
    type Sample = (i64, bool, Vec<u8>);

    /// H.265 samples (length-prefixed, parameter sets lifted out) and an
    /// `hvcC`-bearing sample entry, made with libx265 from a moving pattern.
    fn h265_stream(w: u32, h: u32, frames: i64) -> Option<(Vec<u8>, Vec<Sample>)> {
        ff::init().ok()?;
        let codec = ff::encoder::find_by_name("libx265")?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .ok()?;
        enc.set_width(w);
        enc.set_height(h);
        enc.set_format(ff::format::Pixel::YUV420P);
        enc.set_time_base((1, 90_000));
        enc.set_frame_rate(Some((25, 1)));
        enc.set_gop(10);
        enc.set_max_b_frames(0);
        let mut opts = ff::Dictionary::new();
        opts.set("preset", "ultrafast");
        opts.set("tune", "zerolatency");
        opts.set("x265-params", "log-level=none");
        let mut enc = enc.open_with(opts).ok()?;
        let mut pic = ff::frame::Video::new(ff::format::Pixel::YUV420P, w, h);
        let mut params = Vec::new();
        let mut out = Vec::new();
        let mut take = |enc: &mut ff::encoder::video::Encoder, out: &mut Vec<Sample>| {
            let mut p = ff::Packet::empty();
            while enc.receive_packet(&mut p).is_ok() {
                let (mut sample, mut key) = (Vec::new(), false);
                for nal in vigil_format::annexb::nal_units(p.data().unwrap_or(&[])) {
                    let kind = (nal[0] >> 1) & 0x3f;
                    if (32..=34).contains(&kind) {
                        if params.len() < 3 {
                            params.push(nal.to_vec());
                        }
                        continue;
                    }
                    key |= (16..=21).contains(&kind);
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
                out.push((p.pts().unwrap_or(0), key, sample));
            }
        };
        for i in 0..frames {
            for plane in 0..3 {
                let stride = pic.stride(plane);
                for (n, b) in pic.data_mut(plane).iter_mut().enumerate() {
                    *b = ((n % stride) as i64 + i * 5) as u8;
                }
            }
            pic.set_pts(Some(i * 3600));
            enc.send_frame(&pic).ok()?;
            take(&mut enc, &mut out);
        }
        enc.send_eof().ok()?;
        take(&mut enc, &mut out);
        // hvcC: a 22-byte header (4-byte lengths), then one array per parameter set.
        let mut hvcc = vec![0u8; 21];
        hvcc.push(0xfc | 3);
        hvcc.push(params.len() as u8);
        for p in &params {
            hvcc.extend_from_slice(&[(p[0] >> 1) & 0x3f, 0, 1]);
            hvcc.extend_from_slice(&(p.len() as u16).to_be_bytes());
            hvcc.extend_from_slice(p);
        }
        let mut entry = b"\0\0\0\0hvc1".to_vec();
        entry.extend_from_slice(&((hvcc.len() + 8) as u32).to_be_bytes());
        entry.extend_from_slice(b"hvcC");
        entry.extend_from_slice(&hvcc);
        Some((entry, out))
    }

    /// Every H.265 frame comes out as one H.264 frame with the same media
    /// time, key frames where the source has them, scaled to 1280 wide.
    #[test]
    fn converts_h265_to_h264_frame_for_frame() {
        let Some((entry, frames)) = h265_stream(1920, 1080, 20) else {
            eprintln!("no libx265 here: skipped");
            return;
        };
        assert_eq!(frames.len(), 20);
        let mut c = H265ToH264::new(&entry, 90_000).unwrap();
        let mut out = Vec::new();
        for (pts, key, data) in &frames {
            out.extend(c.push(*pts, *key, data).unwrap());
        }
        out.extend(c.finish().unwrap());
        assert_eq!(
            out.len(),
            frames.len(),
            "one frame out per frame in ({:?})",
            c.encoder_name()
        );
        for (o, (pts, key, _)) in out.iter().zip(&frames) {
            assert_eq!(o.pts, *pts);
            if *key {
                assert!(o.key, "a source key frame at {pts} is a key frame after");
            }
        }
        let p = &out[0].params;
        assert_eq!((p.codec, p.width, p.height), (Codec::H264, 1280, 720));
        assert!(vigil_format::media::codec_string(&p.sample_entry).starts_with("avc1."));
        let one = one_picture(
            &StreamParams {
                codec: Codec::H265,
                timescale: 90_000,
                width: 1920,
                height: 1080,
                sample_entry: entry.clone(),
            },
            &frames[0].2,
        )
        .unwrap();
        assert!(one.key);
        assert!(H265ToH264::new(b"avc1avcC", 90_000).is_err());
        assert!(c.push(0, true, &[0, 0, 0, 9, 1]).is_err(), "a cut sample is an error");
    }
}
