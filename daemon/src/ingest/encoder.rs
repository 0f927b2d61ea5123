//! Raw camera frames (YUYV 4:2:2 from V4L2) or decoded pictures (from the
//! H.265 transcoder) to H.264, with the system FFmpeg (libavcodec +
//! libswscale), scaled on the way when asked. Only in the build with the
//! `ffmpeg` feature.
//!
//! The encoder is the board's hardware one where it has one
//! (`h264_v4l2m2m`: Raspberry Pi 4, many Rockchip and Amlogic boards), else
//! libx264 tuned for live capture (no B-frames, no lookahead: one packet
//! out per frame in, in capture order, so media time stays the camera's).
//! A key frame every two seconds keeps recordings cuttable and exports
//! seekable. Output is Annex B with in-band parameter sets at every key
//! frame; `annexb.rs` turns it into MP4 samples.

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

/// One encoded access unit.
pub struct Packet {
    pub pts: i64,
    pub data: Vec<u8>,
}

pub struct H264Encoder {
    encoder: ff::encoder::video::Encoder,
    scaler: scaling::Context,
    input: ff::frame::Video,
    output: ff::frame::Video,
    /// Bytes per line of the camera's YUYV buffers.
    stride: usize,
    width: usize,
    height: usize,
    /// The encoder in use, for the log.
    pub name: &'static str,
}

/// Hardware first; the order a board's encoders are tried in.
const ENCODERS: [&str; 3] = ["h264_v4l2m2m", "libx264", "libopenh264"];

/// The size and pixel format of the pictures an encoder takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture {
    pub format: Pixel,
    pub width: u32,
    pub height: u32,
}

impl H264Encoder {
    /// An encoder of `width`×`height` YUYV buffers of `stride` bytes a line.
    pub fn new(width: u32, height: u32, stride: u32, fps: u32, timescale: u32) -> Result<Self, String> {
        let input = Picture {
            format: Pixel::YUYV422,
            width,
            height,
        };
        let mut enc = Self::scaling(input, (width, height), fps, timescale)?;
        enc.stride = stride.max(width * 2) as usize;
        Ok(enc)
    }

    /// An encoder of `input` pictures, scaled to `out` (width, height) on
    /// the way; feed it with [`Self::encode_picture`].
    pub fn scaling(input: Picture, out: (u32, u32), fps: u32, timescale: u32) -> Result<Self, String> {
        let (width, height) = out;
        ff::init().map_err(|e| format!("libavcodec: {e}"))?;
        // Encoders that cannot open say why in the error below, not on stderr.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
        let mut tried = Vec::new();
        for name in ENCODERS {
            let Some(codec) = ff::encoder::find_by_name(name) else {
                tried.push(format!("{name}: not in this libavcodec"));
                continue;
            };
            match Self::open(codec, name, width, height, fps, timescale) {
                Ok(encoder) => {
                    let pix = encoder.format();
                    let scaler = scaling::Context::get(
                        input.format,
                        input.width,
                        input.height,
                        pix,
                        width,
                        height,
                        // Not FAST_BILINEAR: on x86 that builds code at run
                        // time, which MemoryDenyWriteExecute= forbids.
                        scaling::Flags::BILINEAR,
                    )
                    .map_err(|e| {
                        format!(
                            "swscale {:?} {}x{} to {pix:?} {width}x{height}: {e}",
                            input.format, input.width, input.height
                        )
                    })?;
                    tracing::info!(encoder = name, width, height, fps, "encoding to H.264");
                    return Ok(H264Encoder {
                        encoder,
                        scaler,
                        input: ff::frame::Video::new(input.format, input.width, input.height),
                        output: ff::frame::Video::new(pix, width, height),
                        stride: input.width as usize * 2,
                        width: input.width as usize,
                        height: input.height as usize,
                        name,
                    });
                }
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        Err(format!("no H.264 encoder could be opened ({})", tried.join("; ")))
    }

    fn open(
        codec: ff::Codec,
        name: &str,
        width: u32,
        height: u32,
        fps: u32,
        timescale: u32,
    ) -> Result<ff::encoder::video::Encoder, ff::Error> {
        let mut enc = ff::codec::context::Context::new_with_codec(codec).encoder().video()?;
        let pix = codec
            .video()
            .ok()
            .and_then(|v| v.formats())
            .and_then(|mut f| f.find(|p| matches!(p, Pixel::YUV420P | Pixel::NV12)))
            .unwrap_or(Pixel::YUV420P);
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(pix);
        enc.set_time_base((1, timescale as i32));
        enc.set_frame_rate(Some((fps as i32, 1)));
        enc.set_gop(fps.saturating_mul(2).max(1));
        enc.set_max_b_frames(0);
        let mut opts = ff::Dictionary::new();
        if name == "libx264" {
            opts.set("preset", "veryfast");
            opts.set("tune", "zerolatency");
            opts.set("crf", "23");
            // A picture marked I (a source key frame) starts a new GOP.
            opts.set("forced-idr", "1");
        }
        enc.open_with(opts)
    }

    /// Encodes one YUYV buffer captured at `pts` (in the timescale given to
    /// `new`); returns the packets the encoder has ready.
    pub fn encode(&mut self, yuyv: &[u8], pts: i64) -> Result<Vec<Packet>, String> {
        let line = self.width * 2;
        if yuyv.len() < self.stride * (self.height - 1) + line {
            return Err(format!(
                "YUYV buffer of {} bytes is short for {}x{}",
                yuyv.len(),
                self.width,
                self.height
            ));
        }
        let dst_stride = self.input.stride(0);
        let dst = self.input.data_mut(0);
        for row in 0..self.height {
            let s = &yuyv[row * self.stride..row * self.stride + line];
            dst[row * dst_stride..row * dst_stride + line].copy_from_slice(s);
        }
        self.scaler
            .run(&self.input, &mut self.output)
            .map_err(|e| format!("swscale: {e}"))?;
        self.output.set_kind(ff::picture::Type::None);
        self.send(pts)
    }

    /// Encodes one decoded picture (of the format and size given to
    /// [`Self::scaling`]) shown at `pts`; `key` asks for a key frame here.
    pub fn encode_picture(&mut self, picture: &ff::frame::Video, pts: i64, key: bool) -> Result<Vec<Packet>, String> {
        if (picture.format(), picture.width(), picture.height())
            != (self.input.format(), self.input.width(), self.input.height())
        {
            return Err(format!(
                "picture changed to {:?} {}x{} mid-stream",
                picture.format(),
                picture.width(),
                picture.height()
            ));
        }
        self.scaler
            .run(picture, &mut self.output)
            .map_err(|e| format!("swscale: {e}"))?;
        self.output.set_kind(if key {
            ff::picture::Type::I
        } else {
            ff::picture::Type::None
        });
        self.send(pts)
    }

    /// Sends the scaled picture in `self.output` and takes what is ready.
    fn send(&mut self, pts: i64) -> Result<Vec<Packet>, String> {
        self.output.set_pts(Some(pts));
        self.encoder
            .send_frame(&self.output)
            .map_err(|e| format!("{}: {e}", self.name))?;
        self.take(pts)
    }

    /// Ends the stream: the packets the encoder still holds.
    pub fn finish(&mut self) -> Result<Vec<Packet>, String> {
        self.encoder.send_eof().map_err(|e| format!("{}: {e}", self.name))?;
        self.take(0)
    }

    fn take(&mut self, pts: i64) -> Result<Vec<Packet>, String> {
        let mut out = Vec::new();
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            if let Some(data) = packet.data() {
                out.push(Packet {
                    pts: packet.pts().unwrap_or(pts),
                    data: data.to_vec(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moving YUYV test pattern through the real encoder: every frame
    /// comes back, key frames every two seconds carry SPS and PPS in-band,
    /// and the access units split cleanly for the recorder.
    #[test]
    fn encodes_yuyv_to_h264_one_packet_per_frame() {
        let (w, h, fps) = (640u32, 360u32, 15u32);
        let mut enc = H264Encoder::new(w, h, w * 2, fps, 90_000).unwrap();
        let mut keys = 0;
        let mut packets = 0;
        for i in 0..(fps * 3) as i64 {
            let frame: Vec<u8> = (0..(w * h * 2) as usize)
                .map(|p| ((p as i64 + i * 7) % 251) as u8)
                .collect();
            for p in enc.encode(&frame, i * 6000).unwrap() {
                let au = vigil_format::annexb::access_unit(&p.data).unwrap();
                if au.key {
                    keys += 1;
                    assert!(au.sps.is_some() && au.pps.is_some(), "key frame without parameter sets");
                }
                assert_eq!(p.pts, packets * 6000, "encoder reordered or dropped frames");
                packets += 1;
            }
        }
        assert_eq!(packets, (fps * 3) as i64, "one packet per frame in ({})", enc.name);
        assert!((2..=3).contains(&keys), "{keys} key frames in 3 s");
        assert!(enc.encode(&[0; 10], 0).is_err());
    }
}
