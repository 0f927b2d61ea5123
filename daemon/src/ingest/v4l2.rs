//! V4L2 (USB and CSI) camera ingest: `v4l2:///dev/video0?format=mjpeg&width=1280&height=720&fps=30`.
//!
//! Capture is mmap streaming with the `v4l` crate on one blocking thread per
//! camera (a V4L2 dequeue is a blocking ioctl). What the camera compresses is
//! stored as it comes: H.264 (Annex B turned into MP4 samples, parameter
//! sets into `avcC`) and Motion JPEG (one JPEG per sample). Raw YUYV is
//! encoded to H.264 only in the build with the `ffmpeg` feature
//! (`encoder.rs`); without it the camera's error says so.
//!
//! An unplugged camera fails its dequeue (ENODEV) or stops delivering
//! frames (the stall watchdog): the recording is closed as for a dropped
//! RTSP connection, and the device is reopened with the same backoff until
//! it is back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use v4l::buffer::Type;
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::prelude::MmapStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use crate::config::CameraConfig;
use crate::ingest::rtsp::Backoff;
use crate::storage::recorder::{Event, Frame, StreamParams};
use vigil_format::vseg::Codec;

#[derive(Debug, thiserror::Error)]
pub enum V4l2Error {
    #[error("{path}: {source}")]
    Device { path: String, source: std::io::Error },
    #[error("{0}")]
    Format(String),
    #[error("no frames for {0:?} (camera unplugged or hung?)")]
    Stalled(Duration),
    #[error(
        "the camera sends raw {0}, and this build of vigil has no video encoder: \
         build vigil with `--features ffmpeg` (libavcodec), or choose a compressed \
         format the camera offers (`?format=mjpeg` or `?format=h264`; see `vigil cameras probe`)"
    )]
    NeedsEncoder(&'static str),
    #[error("encoder: {0}")]
    Encoder(String),
    #[error("recorder stopped")]
    RecorderGone,
}

pub use crate::config::v4l2_url::{parse_url, PixelFormat, Source};

impl PixelFormat {
    fn fourcc(self) -> FourCC {
        FourCC::new(match self {
            PixelFormat::H264 => b"H264",
            PixelFormat::Mjpeg => b"MJPG",
            PixelFormat::Yuyv => b"YUYV",
        })
    }
    fn from_fourcc(f: &FourCC) -> Option<Self> {
        match &f.repr {
            b"H264" => Some(PixelFormat::H264),
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"YUYV" => Some(PixelFormat::Yuyv),
            _ => None,
        }
    }
}

/// Whether this build can record raw YUYV.
pub const HAS_ENCODER: bool = cfg!(feature = "ffmpeg");

/// 90 kHz, as RTP video: the recorder and exporter see one timescale.
const TIMESCALE: u32 = 90_000;
/// Send a batch at a key frame or when it is this old (as RTSP ingest).
const MAX_BATCH_AGE: Duration = Duration::from_secs(1);
/// How often a blocked dequeue wakes to check for shutdown and stalls.
const POLL: Duration = Duration::from_millis(250);
const BUFFERS: u32 = 4;

/// Runs one V4L2 camera until `shutdown` flips to true.
pub async fn run_camera(
    cam: CameraConfig,
    src: Source,
    live: Option<tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
    stall_timeout: Duration,
    tx: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    // A replugged camera is back within a second or two, and trying a device
    // node that is not there costs one failed open(): retry every 2 s at most.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let _ = tx
            .send(Event::State {
                state: "connecting",
                error: None,
            })
            .await;
        tracing::info!(camera = %cam.name, device = %src.device.display(), "opening V4L2 device");
        let stop = Arc::new(AtomicBool::new(false));
        let job = tokio::task::spawn_blocking({
            let (name, src, live, tx, stop) = (cam.name.clone(), src.clone(), live.clone(), tx.clone(), stop.clone());
            move || {
                let mut session = Session::new(name, live, stall_timeout, tx);
                let r = session.capture(&src, &stop);
                session.finish();
                (r, session.streamed)
            }
        });
        tokio::pin!(job);
        let joined = tokio::select! {
            r = &mut job => r,
            _ = shutdown.changed() => {
                stop.store(true, Ordering::Relaxed);
                job.await
            }
        };
        let (result, streamed) =
            joined.unwrap_or_else(|e| (Err(V4l2Error::Format(format!("capture thread failed: {e}"))), false));
        if *shutdown.borrow() {
            break;
        }
        let _ = tx.send(Event::Disconnected).await;
        let err = match result {
            Ok(()) => V4l2Error::Format("capture stopped".into()),
            Err(V4l2Error::RecorderGone) => break,
            Err(e) => e,
        };
        if streamed {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(camera = %cam.name, error = %err, retry_in_ms = delay.as_millis() as u64, "camera offline");
        let _ = tx
            .send(Event::State {
                state: "offline",
                error: Some(err.to_string()),
            })
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> V4l2Error + '_ {
    move |source| V4l2Error::Device {
        path: path.display().to_string(),
        source,
    }
}

/// One open of the device: capture state, the batch in hand and counters.
struct Session {
    camera: String,
    live: Option<tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
    stall: Duration,
    tx: mpsc::Sender<Event>,
    batch: Vec<Frame>,
    batch_started: Instant,
    streamed: bool,
    /// Frames dequeued, frames the driver's sequence numbers say it dropped,
    /// and frames that could not be used (logged once per session).
    captured: u64,
    driver_dropped: u64,
    unusable: u64,
    params: Option<Arc<StreamParams>>,
    last_pts: Option<i64>,
    /// Streaming was started (the counts are worth a log line).
    started: bool,
}

impl Session {
    fn new(
        camera: String,
        live: Option<tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
        stall: Duration,
        tx: mpsc::Sender<Event>,
    ) -> Self {
        Session {
            camera,
            live,
            stall,
            tx,
            batch: Vec::new(),
            batch_started: Instant::now(),
            streamed: false,
            captured: 0,
            driver_dropped: 0,
            unusable: 0,
            params: None,
            last_pts: None,
            started: false,
        }
    }

    fn capture(&mut self, src: &Source, stop: &AtomicBool) -> Result<(), V4l2Error> {
        let err = io_err(&src.device);
        let dev = Device::with_path(&src.device).map_err(&err)?;
        let caps = dev.query_caps().map_err(&err)?;
        if !caps.capabilities.contains(v4l::capability::Flags::VIDEO_CAPTURE) {
            return Err(V4l2Error::Format(format!(
                "{} ({}) is not a single-planar video capture device",
                src.device.display(),
                caps.card
            )));
        }
        let offered: Vec<FourCC> = dev
            .enum_formats()
            .map_err(&err)?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let pix = choose_format(src.format, &offered)?;
        let mut fmt = dev.format().map_err(&err)?;
        fmt.fourcc = pix.fourcc();
        if let Some((w, h)) = src.size {
            fmt.width = w;
            fmt.height = h;
        }
        let fmt = dev.set_format(&fmt).map_err(&err)?;
        if fmt.fourcc != pix.fourcc() {
            return Err(V4l2Error::Format(format!(
                "the device would not switch to {} (it kept {})",
                pix.name(),
                fmt.fourcc
            )));
        }
        if let Some((w, h)) = src.size {
            if (fmt.width, fmt.height) != (w, h) {
                tracing::warn!(camera = %self.camera, asked = %format!("{w}x{h}"), got = %format!("{}x{}", fmt.width, fmt.height), "the camera chose another frame size");
            }
        }
        if let Some(fps) = src.fps {
            dev.set_params(&v4l::video::capture::Parameters::with_fps(fps))
                .map_err(&err)?;
        }
        let fps = dev
            .params()
            .ok()
            .filter(|p| p.interval.numerator > 0)
            .map(|p| p.interval.denominator.div_ceil(p.interval.numerator))
            .unwrap_or(30)
            .clamp(1, 240);
        let mut convert = Converter::new(pix, fmt.width, fmt.height, fmt.stride, fps)?;
        tracing::info!(camera = %self.camera, format = pix.name(), width = fmt.width, height = fmt.height, fps, "capturing");
        let mut stream = MmapStream::with_buffers(&dev, Type::VideoCapture, BUFFERS).map_err(&err)?;
        stream.set_timeout(POLL);
        self.started = true;
        let mut last_frame = Instant::now();
        let mut last_seq: Option<u32> = None;
        let mut buf = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let (ts_us, seq) = match stream.next() {
                Ok((data, meta)) => {
                    let used = (meta.bytesused as usize).min(data.len());
                    buf.clear();
                    buf.extend_from_slice(&data[..used]);
                    // time_t is 32-bit on some ARM boards.
                    #[allow(clippy::unnecessary_cast)]
                    let us = meta.timestamp.sec as i64 * 1_000_000 + meta.timestamp.usec as i64;
                    (us, meta.sequence)
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if last_frame.elapsed() >= self.stall {
                        return Err(V4l2Error::Stalled(self.stall));
                    }
                    continue;
                }
                Err(e) => return Err(err(e)),
            };
            last_frame = Instant::now();
            self.captured += 1;
            if let Some(prev) = last_seq {
                self.driver_dropped += u64::from(seq.wrapping_sub(prev).saturating_sub(1));
            }
            last_seq = Some(seq);
            // Drivers stamp CLOCK_MONOTONIC; a driver that stamps nothing gets ours.
            let us = if ts_us > 0 {
                ts_us
            } else {
                crate::base::clock::mono_ms() * 1000
            };
            let pts = us.saturating_mul(9) / 100;
            if buf.is_empty() {
                self.unusable += 1;
                continue;
            }
            for out in convert.frames(&buf, pts) {
                match out {
                    Ok(f) => self.push(f)?,
                    Err(e) => {
                        if self.unusable == 0 {
                            tracing::warn!(camera = %self.camera, error = %e, "unusable frame skipped (logged once per connection)");
                        }
                        self.unusable += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, out: Converted) -> Result<(), V4l2Error> {
        let params = match out.params {
            Some(p) if self.params.as_deref() != Some(&p) => {
                let p = Arc::new(p);
                self.params = Some(p.clone());
                Some(p)
            }
            _ => None,
        };
        if self.params.is_none() {
            // No parameter sets yet (H.264 joined between key frames).
            return Ok(());
        }
        // The recorder needs media time that moves forward; a driver whose
        // clock steps back is clamped, never dropped.
        let pts = match self.last_pts {
            Some(last) if out.pts <= last => last + 1,
            _ => out.pts,
        };
        self.last_pts = Some(pts);
        if !self.streamed {
            self.streamed = true;
            tracing::info!(camera = %self.camera, "streaming");
            self.tx
                .blocking_send(Event::State {
                    state: "streaming",
                    error: None,
                })
                .map_err(|_| V4l2Error::RecorderGone)?;
        }
        if let (Some(live), Some(p)) = (&self.live, &self.params) {
            if p.codec == Codec::H264 && live.receiver_count() > 0 {
                let _ = live.send(crate::ingest::live::LiveFrame {
                    pts,
                    key: out.key,
                    data: bytes::Bytes::copy_from_slice(&out.data),
                    params: p.clone(),
                });
            }
        }
        let now = Instant::now();
        if self.batch.is_empty() {
            self.batch_started = now;
        }
        self.batch.push(Frame {
            pts,
            key: out.key,
            data: out.data,
            params,
        });
        if out.key || now.duration_since(self.batch_started) >= MAX_BATCH_AGE {
            self.tx
                .blocking_send(Event::Frames(std::mem::take(&mut self.batch)))
                .map_err(|_| V4l2Error::RecorderGone)?;
        }
        Ok(())
    }

    /// Hands over what is batched (frames received are never dropped) and
    /// logs the session's counts.
    fn finish(&mut self) {
        if !self.batch.is_empty() {
            let _ = self.tx.blocking_send(Event::Frames(std::mem::take(&mut self.batch)));
        }
        if !self.started {
            return;
        }
        tracing::info!(
            camera = %self.camera,
            captured = self.captured,
            driver_dropped = self.driver_dropped,
            unusable = self.unusable,
            "V4L2 capture ended"
        );
    }
}

/// The format to capture: the one asked for if the camera offers it, else
/// the best it offers (H.264, then MJPEG, then YUYV where it can be encoded).
fn choose_format(asked: Option<PixelFormat>, offered: &[FourCC]) -> Result<PixelFormat, V4l2Error> {
    let have: Vec<PixelFormat> = offered.iter().filter_map(PixelFormat::from_fourcc).collect();
    let list = || offered.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
    let pix = match asked {
        Some(f) if have.contains(&f) => f,
        Some(f) => {
            return Err(V4l2Error::Format(format!(
                "the camera does not offer {} (it offers {})",
                f.name(),
                list()
            )))
        }
        None => *[PixelFormat::H264, PixelFormat::Mjpeg, PixelFormat::Yuyv]
            .iter()
            .find(|f| have.contains(f))
            .ok_or_else(|| {
                V4l2Error::Format(format!(
                    "the camera offers none of H.264, MJPEG or YUYV (it offers {})",
                    list()
                ))
            })?,
    };
    if pix == PixelFormat::Yuyv && !HAS_ENCODER {
        return Err(V4l2Error::NeedsEncoder("YUYV"));
    }
    Ok(pix)
}

/// A frame ready for the recorder; `params` when they are (re)stated.
struct Converted {
    pts: i64,
    key: bool,
    data: Vec<u8>,
    params: Option<StreamParams>,
}

/// Camera buffers to recorder frames, per format.
enum Converter {
    H264(AvcState),
    Mjpeg {
        width: u16,
        height: u16,
    },
    #[cfg(feature = "ffmpeg")]
    Yuyv(Box<crate::ingest::encoder::H264Encoder>, AvcState),
}

/// The parameter sets seen so far on an H.264 stream.
struct AvcState {
    width: u16,
    height: u16,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl AvcState {
    fn access_unit(&mut self, annexb: &[u8], pts: i64) -> Result<Converted, String> {
        let au = vigil_format::annexb::access_unit(annexb)?;
        let mut changed = false;
        if au.sps.is_some() && au.sps != self.sps {
            self.sps = au.sps;
            changed = true;
        }
        if au.pps.is_some() && au.pps != self.pps {
            self.pps = au.pps;
            changed = true;
        }
        let params = match (changed, &self.sps, &self.pps) {
            (true, Some(sps), Some(pps)) => Some(StreamParams {
                codec: Codec::H264,
                timescale: TIMESCALE,
                width: self.width,
                height: self.height,
                sample_entry: vigil_format::mp4::avc1_sample_entry(
                    self.width,
                    self.height,
                    &vigil_format::annexb::avc_config(sps, pps)?,
                ),
            }),
            _ => None,
        };
        Ok(Converted {
            pts,
            key: au.key,
            data: au.sample,
            params,
        })
    }
}

impl Converter {
    fn new(pix: PixelFormat, width: u32, height: u32, stride: u32, fps: u32) -> Result<Self, V4l2Error> {
        let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
            _ => return Err(V4l2Error::Format(format!("unusable frame size {width}x{height}"))),
        };
        let avc = AvcState {
            width: w,
            height: h,
            sps: None,
            pps: None,
        };
        Ok(match pix {
            PixelFormat::H264 => Converter::H264(avc),
            PixelFormat::Mjpeg => Converter::Mjpeg { width: w, height: h },
            #[cfg(feature = "ffmpeg")]
            PixelFormat::Yuyv => Converter::Yuyv(
                Box::new(
                    crate::ingest::encoder::H264Encoder::new(width, height, stride, fps, TIMESCALE)
                        .map_err(V4l2Error::Encoder)?,
                ),
                avc,
            ),
            #[cfg(not(feature = "ffmpeg"))]
            PixelFormat::Yuyv => {
                let _ = (stride, fps);
                return Err(V4l2Error::NeedsEncoder("YUYV"));
            }
        })
    }

    /// The frames one camera buffer yields (an encoder may hold some back).
    fn frames(&mut self, buf: &[u8], pts: i64) -> Vec<Result<Converted, String>> {
        match self {
            Converter::H264(avc) => vec![avc.access_unit(buf, pts)],
            Converter::Mjpeg { width, height } => vec![mjpeg_frame(buf, pts, *width, *height)],
            #[cfg(feature = "ffmpeg")]
            Converter::Yuyv(enc, avc) => match enc.encode(buf, pts) {
                Ok(packets) => packets.into_iter().map(|p| avc.access_unit(&p.data, p.pts)).collect(),
                Err(e) => vec![Err(e)],
            },
        }
    }
}

/// One MJPEG buffer: a JPEG image from SOI to EOI (UVC cameras may pad the
/// buffer after EOI; the padding is not stored).
fn mjpeg_frame(buf: &[u8], pts: i64, width: u16, height: u16) -> Result<Converted, String> {
    if !buf.starts_with(&[0xff, 0xd8]) {
        return Err(format!(
            "MJPEG buffer of {} bytes does not start with a JPEG SOI marker",
            buf.len()
        ));
    }
    let end = buf
        .windows(2)
        .rposition(|w| w == [0xff, 0xd9])
        .map(|i| i + 2)
        .ok_or_else(|| format!("MJPEG buffer of {} bytes has no JPEG EOI marker (truncated)", buf.len()))?;
    Ok(Converted {
        pts,
        key: true,
        data: buf[..end].to_vec(),
        params: Some(StreamParams {
            codec: Codec::Mjpeg,
            timescale: TIMESCALE,
            width,
            height,
            sample_entry: vigil_format::mp4::jpeg_sample_entry(width, height),
        }),
    })
}

/// What `vigil cameras probe` prints for one device node.
#[derive(Debug, serde::Serialize)]
pub struct DeviceReport {
    pub path: String,
    pub card: String,
    pub driver: String,
    pub bus: String,
    /// Whether it can be recorded (video capture and streaming I/O).
    pub capture: bool,
    pub formats: Vec<FormatReport>,
    pub error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct FormatReport {
    pub fourcc: String,
    pub description: String,
    /// `h264`, `mjpeg`, `yuyv` when Vigil records it (in this build).
    pub vigil: Option<&'static str>,
    /// `WxH@fps,fps` per size, or a stepwise range.
    pub sizes: Vec<String>,
}

/// Every `/dev/video*` node with its formats, sizes and frame rates.
pub fn probe_devices() -> Vec<DeviceReport> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("video"))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by_key(|p| {
        let n = p.to_string_lossy();
        let digits: String = n.chars().filter(char::is_ascii_digit).collect();
        digits.parse::<u64>().unwrap_or(u64::MAX)
    });
    nodes.iter().map(|p| probe_device(p)).collect()
}

/// One device node's report (`vigil cameras probe`, the web UI's camera test).
pub fn probe_device(path: &Path) -> DeviceReport {
    let mut r = DeviceReport {
        path: path.display().to_string(),
        card: String::new(),
        driver: String::new(),
        bus: String::new(),
        capture: false,
        formats: Vec::new(),
        error: None,
    };
    let dev = match Device::with_path(path) {
        Ok(d) => d,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let caps = match dev.query_caps() {
        Ok(c) => c,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    r.card = caps.card.clone();
    r.driver = caps.driver.clone();
    r.bus = caps.bus.clone();
    r.capture = caps.capabilities.contains(v4l::capability::Flags::VIDEO_CAPTURE)
        && caps.capabilities.contains(v4l::capability::Flags::STREAMING);
    if !r.capture {
        return r;
    }
    let formats = match dev.enum_formats() {
        Ok(f) => f,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    for f in formats {
        let vigil = PixelFormat::from_fourcc(&f.fourcc)
            .filter(|p| *p != PixelFormat::Yuyv || HAS_ENCODER)
            .map(PixelFormat::name);
        let mut sizes = Vec::new();
        for s in dev.enum_framesizes(f.fourcc).unwrap_or_default() {
            match s.size {
                FrameSizeEnum::Discrete(d) => {
                    let rates: Vec<String> = dev
                        .enum_frameintervals(f.fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| match i.interval {
                            v4l::frameinterval::FrameIntervalEnum::Discrete(fr) if fr.numerator > 0 => {
                                let fps = f64::from(fr.denominator) / f64::from(fr.numerator);
                                Some(format!("{}", (fps * 100.0).round() / 100.0))
                            }
                            v4l::frameinterval::FrameIntervalEnum::Stepwise(s) => Some(format!("{s}")),
                            _ => None,
                        })
                        .collect();
                    sizes.push(format!("{}x{}@{}", d.width, d.height, rates.join(",")));
                }
                FrameSizeEnum::Stepwise(s) => sizes.push(s.to_string()),
            }
        }
        r.formats.push(FormatReport {
            fourcc: f.fourcc.to_string(),
            description: f.description.clone(),
            vigil,
            sizes,
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn urls_with_and_without_options() {
        let s = parse_url(&url("v4l2:///dev/video0")).unwrap();
        assert_eq!(s.device, PathBuf::from("/dev/video0"));
        assert_eq!((s.format, s.size, s.fps), (None, None, None));
        let s = parse_url(&url("v4l2:///dev/video2?format=MJPEG&width=1280&height=720&fps=15")).unwrap();
        assert_eq!(
            (s.format, s.size, s.fps),
            (Some(PixelFormat::Mjpeg), Some((1280, 720)), Some(15))
        );
        for bad in [
            "v4l2://host/dev/video0",
            "v4l2:///tmp/video0",
            "v4l2:///dev/video0?format=rgb",
            "v4l2:///dev/video0?width=640",
            "v4l2:///dev/video0?fps=0",
            "v4l2:///dev/video0?width=-1&height=2",
            "v4l2:///dev/video0?colour=red",
        ] {
            assert!(parse_url(&url(bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn format_choice_prefers_compressed_and_explains_raw() {
        let offered = [FourCC::new(b"YUYV"), FourCC::new(b"MJPG")];
        assert_eq!(choose_format(None, &offered).unwrap(), PixelFormat::Mjpeg);
        let e = choose_format(Some(PixelFormat::H264), &offered)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not offer h264") && e.contains("YUYV"), "{e}");
        let raw = choose_format(None, &[FourCC::new(b"YUYV")]);
        if HAS_ENCODER {
            assert_eq!(raw.unwrap(), PixelFormat::Yuyv);
        } else {
            assert!(raw.unwrap_err().to_string().contains("--features ffmpeg"));
        }
        assert!(choose_format(None, &[FourCC::new(b"RGB3")]).is_err());
    }

    #[test]
    fn mjpeg_frames_are_trimmed_to_eoi_and_checked() {
        let f = mjpeg_frame(&[0xff, 0xd8, 1, 2, 0xff, 0xd9, 0, 0, 0], 7, 4, 2).unwrap();
        assert_eq!(f.data, vec![0xff, 0xd8, 1, 2, 0xff, 0xd9]);
        assert!(f.key);
        assert!(mjpeg_frame(&[0, 0, 0, 0], 0, 4, 2).is_err());
        assert!(mjpeg_frame(&[0xff, 0xd8, 1, 2], 0, 4, 2).is_err());
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let src = parse_url(&url("v4l2:///dev/video-vigil-test-none")).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let mut s = Session::new("t".into(), None, Duration::from_secs(1), tx);
        let e = s.capture(&src, &AtomicBool::new(false)).unwrap_err().to_string();
        assert!(e.contains("/dev/video-vigil-test-none"), "{e}");
    }
}
