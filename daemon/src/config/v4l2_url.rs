//! V4L2 camera URLs: `v4l2:///dev/videoN[?format=h264|mjpeg|yuyv&width=W&height=H&fps=F]`,
//! parsed once, here, so that the config file, the web UI and ingest agree.

use std::path::PathBuf;

/// The camera formats Vigil records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    H264,
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::H264 => "h264",
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::Yuyv => "yuyv",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "h264" => Some(PixelFormat::H264),
            "mjpeg" | "mjpg" => Some(PixelFormat::Mjpeg),
            "yuyv" => Some(PixelFormat::Yuyv),
            _ => None,
        }
    }
}

/// A V4L2 camera as its URL gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub device: PathBuf,
    pub format: Option<PixelFormat>,
    /// Frame size; both or neither.
    pub size: Option<(u32, u32)>,
    pub fps: Option<u32>,
}

/// Parses `v4l2:///dev/videoN[?format=h264|mjpeg|yuyv&width=W&height=H&fps=F]`.
/// The error is one sentence for the config file's message.
pub fn parse_url(url: &url::Url) -> Result<Source, String> {
    if url.scheme() != "v4l2" {
        return Err(format!("not a v4l2:// URL: {url}"));
    }
    if url.host_str().is_some_and(|h| !h.is_empty()) {
        return Err("a v4l2 URL names a device, not a host: write v4l2:///dev/video0 (three slashes)".into());
    }
    let device = PathBuf::from(url.path());
    if !url.path().starts_with("/dev/") || url.path().contains("/../") {
        return Err(format!(
            "\"{}\" is not a device path under /dev (e.g. v4l2:///dev/video0 or /dev/v4l/by-id/...)",
            url.path()
        ));
    }
    let mut src = Source {
        device,
        format: None,
        size: None,
        fps: None,
    };
    let (mut width, mut height) = (None, None);
    let number = |k: &str, v: &str, max: u32| -> Result<u32, String> {
        match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("{k}={v}: expected a number from 1 to {max}")),
        }
    };
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "format" => {
                src.format =
                    Some(PixelFormat::parse(&v).ok_or_else(|| format!("format={v}: expected h264, mjpeg or yuyv"))?)
            }
            "width" => width = Some(number("width", &v, 8192)?),
            "height" => height = Some(number("height", &v, 8192)?),
            "fps" => src.fps = Some(number("fps", &v, 240)?),
            other => {
                return Err(format!(
                    "unknown v4l2 URL option \"{other}\" (format, width, height, fps)"
                ))
            }
        }
    }
    src.size = match (width, height) {
        (Some(w), Some(h)) => Some((w, h)),
        (None, None) => None,
        _ => return Err("give width and height together".into()),
    };
    Ok(src)
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
}
