//! V4L2 (USB and CSI) camera ingest: `v4l2:///dev/video0?format=mjpeg&width=1280&height=720&fps=30`.
//!
//! Capture is mmap streaming with the `v4l` crate on one blocking thread per
//! camera (a V4L2 dequeue is a blocking ioctl). What the camera compresses is
//! stored as it comes: H.264 (Annex B turned into MP4 samples, parameter
//! sets into `avcC`) and Motion JPEG (one JPEG per sample). Raw YUYV is
//! encoded to H.264 only in the build with the `ffmpeg` feature
//! (`encoder.rs`); without it the camera's error says so.
//!
//! The supervisor (`supervisor.rs`) runs the camera as it runs an RTSP one.
//! An unplugged camera fails its dequeue (ENODEV) or stops delivering
//! frames (the supervisor's stall watchdog): the recording is closed as for
//! a dropped RTSP connection, and the device is reopened every 2 s at most
//! until it is back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use v4l::buffer::Type;
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::prelude::MmapStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use crate::config::CameraConfig;
use crate::ingest::supervisor::{self, Backoff, Delivery};
use crate::storage::recorder::Event;
use vigil_format::media::{Frame, StreamParams};
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
}

use crate::config::v4l2_url::{PixelFormat, Source};

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
/// How often a blocked dequeue wakes to check whether to stop.
const POLL: Duration = Duration::from_millis(250);
const BUFFERS: u32 = 4;

/// Deliveries in flight from the capture thread to the supervisor.
const QUEUE: usize = 16;

/// Runs one V4L2 camera until `shutdown` flips to true.
pub async fn run_camera(
    cam: CameraConfig,
    src: Source,
    live: Option<tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
    stall_timeout: Duration,
    tx: mpsc::Sender<Event>,
    shutdown: watch::Receiver<bool>,
) {
    // A replugged camera is back within a second or two, and trying a device
    // node that is not there costs one failed open(): retry every 2 s at most.
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
    let camera = V4l2Camera { name: cam.name, src };
    supervisor::run(camera, backoff, stall_timeout, live, tx, shutdown).await;
}

/// A camera's device node and format, opened by the supervisor.
struct V4l2Camera {
    name: String,
    src: Source,
}

impl supervisor::Source for V4l2Camera {
    type Error = V4l2Error;
    type Session = Capturing;

    fn camera(&self) -> &str {
        &self.name
    }

    /// Starts the capture thread: opening the device is its first step, so
    /// a missing device is the session's first error.
    async fn connect(&mut self) -> Result<Capturing, V4l2Error> {
        tracing::info!(camera = %self.name, device = %self.src.device.display(), "opening V4L2 device");
        let stop = Arc::new(AtomicBool::new(false));
        let (out, deliveries) = mpsc::channel(QUEUE);
        let job = tokio::task::spawn_blocking({
            let (name, src, stop) = (self.name.clone(), self.src.clone(), stop.clone());
            move || {
                let mut capture = DeviceCapture::new(name, out);
                let r = capture.run(&src, &stop);
                capture.log_counts();
                r
            }
        });
        Ok(Capturing {
            deliveries,
            stop,
            job: Some(job),
        })
    }

    fn stalled(&self, after: Duration) -> V4l2Error {
        V4l2Error::Stalled(after)
    }
}

/// The async side of a capture thread: what it delivers, then how it ended.
struct Capturing {
    deliveries: mpsc::Receiver<Delivery>,
    stop: Arc<AtomicBool>,
    job: Option<tokio::task::JoinHandle<Result<(), V4l2Error>>>,
}

impl supervisor::Session for Capturing {
    type Error = V4l2Error;

    async fn next(&mut self) -> Result<Delivery, V4l2Error> {
        if let Some(d) = self.deliveries.recv().await {
            return Ok(d);
        }
        let ended = match self.job.take() {
            Some(job) => job.await,
            None => Ok(Ok(())),
        };
        match ended {
            Ok(Ok(())) => Err(V4l2Error::Format("capture stopped".into())),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(V4l2Error::Format(format!("capture thread failed: {e}"))),
        }
    }

    /// Stops the thread (it wakes from a blocked dequeue within `POLL`) and
    /// collects what it still delivers.
    async fn close(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Relaxed);
        let mut frames = Vec::new();
        while let Some(d) = self.deliveries.recv().await {
            if let Delivery::Frame(f) = d {
                frames.push(f);
            }
        }
        if let Some(job) = self.job.take() {
            let _ = job.await;
        }
        frames
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> V4l2Error + '_ {
    move |source| V4l2Error::Device {
        path: path.display().to_string(),
        source,
    }
}

/// One open of the device, on the capture thread: the stream's state and
/// its counts.
struct DeviceCapture {
    camera: String,
    out: mpsc::Sender<Delivery>,
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

impl DeviceCapture {
    fn new(camera: String, out: mpsc::Sender<Delivery>) -> Self {
        DeviceCapture {
            camera,
            out,
            captured: 0,
            driver_dropped: 0,
            unusable: 0,
            params: None,
            last_pts: None,
            started: false,
        }
    }

    /// Captures until `stop` is set or the session is dropped.
    fn run(&mut self, src: &Source, stop: &AtomicBool) -> Result<(), V4l2Error> {
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
                // Woken to look at `stop`; a camera that stays silent is
                // the supervisor's watchdog's to end.
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => return Err(err(e)),
            };
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
            let mut delivered = false;
            if buf.is_empty() {
                self.unusable += 1;
            } else {
                for out in convert.frames(&buf, pts) {
                    match out {
                        Ok(f) => {
                            if let Some(frame) = self.frame(f) {
                                if self.out.blocking_send(Delivery::Frame(frame)).is_err() {
                                    return Ok(());
                                }
                                delivered = true;
                            }
                        }
                        Err(e) => {
                            if self.unusable == 0 {
                                tracing::warn!(camera = %self.camera, error = %e, "unusable frame skipped (logged once per connection)");
                            }
                            self.unusable += 1;
                        }
                    }
                }
            }
            // A buffer that made no frame still shows the camera is alive.
            if !delivered && self.out.blocking_send(Delivery::Alive).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A converted frame for the recorder, once the stream's parameters are
    /// known: the parameters attached when they change, media time that
    /// moves forward.
    fn frame(&mut self, out: Converted) -> Option<Frame> {
        let params = match out.params {
            Some(p) if self.params.as_deref() != Some(&p) => {
                let p = Arc::new(p);
                self.params = Some(p.clone());
                Some(p)
            }
            _ => None,
        };
        // No parameter sets yet (H.264 joined between key frames).
        self.params.as_ref()?;
        // The recorder needs media time that moves forward; a driver whose
        // clock steps back is clamped, never dropped.
        let pts = match self.last_pts {
            Some(last) if out.pts <= last => last + 1,
            _ => out.pts,
        };
        self.last_pts = Some(pts);
        Some(Frame {
            pts,
            key: out.key,
            data: out.data,
            params,
        })
    }

    /// Logs the session's counts.
    fn log_counts(&self) {
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
    if let Err(e) = describe_device(path, &mut r) {
        r.error = Some(e.to_string());
    }
    r
}

/// Fills in `r` as far as the device answers.
fn describe_device(path: &Path, r: &mut DeviceReport) -> std::io::Result<()> {
    let dev = Device::with_path(path)?;
    let caps = dev.query_caps()?;
    r.card = caps.card.clone();
    r.driver = caps.driver.clone();
    r.bus = caps.bus.clone();
    r.capture = caps.capabilities.contains(v4l::capability::Flags::VIDEO_CAPTURE)
        && caps.capabilities.contains(v4l::capability::Flags::STREAMING);
    if !r.capture {
        return Ok(());
    }
    for f in dev.enum_formats()? {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::v4l2_url::parse_url;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
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
        let mut c = DeviceCapture::new("t".into(), tx);
        let e = c.run(&src, &AtomicBool::new(false)).unwrap_err().to_string();
        assert!(e.contains("/dev/video-vigil-test-none"), "{e}");
    }
}
