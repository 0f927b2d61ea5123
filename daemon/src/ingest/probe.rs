//! The camera test of the web UI (`POST /api/v1/probe-camera`) as a verdict
//! and nothing more: it works, with the codec and picture size, or it does
//! not, with one short category of why. No byte read from the remote host or
//! the device (a banner, an error page, a frame) goes back to the caller,
//! and only V4L2 device nodes (`/dev/video*`, `/dev/v4l/...` links to one)
//! can be opened.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::rtsp::IngestError;

/// What the probe found: `{"ok": true, "codec", "width", "height"}` or
/// `{"ok": false, "error": <category>}`.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Verdict {
    Works {
        ok: bool,
        codec: &'static str,
        width: u32,
        height: u32,
    },
    Fails {
        ok: bool,
        error: &'static str,
    },
}

impl Verdict {
    fn works(codec: &'static str, width: u32, height: u32) -> Self {
        Verdict::Works {
            ok: true,
            codec,
            width,
            height,
        }
    }

    fn fails(error: &'static str) -> Self {
        Verdict::Fails { ok: false, error }
    }
}

/// Why a probe failed, in one of six words a client may show.
pub fn failure_category(e: &IngestError) -> &'static str {
    match e {
        IngestError::Timeout(..) | IngestError::Stalled(_) => "timeout",
        IngestError::NoVideo(_) | IngestError::Params(_) | IngestError::Ended => "no video",
        IngestError::Rtsp(r) => match r.status_code() {
            Some(401 | 403) => "auth failed",
            Some(404 | 415 | 461) => "no video",
            Some(_) => "not rtsp",
            None => {
                let text = r.to_string();
                if text.starts_with("Unable to connect") {
                    if text.contains("refused") {
                        "refused"
                    } else {
                        "unreachable"
                    }
                } else if text == "Timeout" {
                    "timeout"
                } else {
                    "not rtsp"
                }
            }
        },
    }
}

/// Tries an RTSP camera as the recorder would, bounded by `limit`.
pub async fn probe_rtsp(url: &url::Url, username: Option<&str>, password: Option<&str>, limit: Duration) -> Verdict {
    match super::rtsp::probe(url, username, password, limit).await {
        Ok(p) => Verdict::works(
            p.params.codec.name(),
            u32::from(p.params.width),
            u32::from(p.params.height),
        ),
        Err(e) => {
            tracing::info!(url = %url, "camera probe failed: {e}");
            Verdict::fails(failure_category(&e))
        }
    }
}

/// Why a device path may not be probed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("only V4L2 capture devices may be probed: /dev/videoN or a /dev/v4l/... link to one")]
pub struct NotAVideoDevice;

fn is_video_node(p: &Path) -> bool {
    p.parent() == Some(Path::new("/dev"))
        && p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("video"))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The device node a probe may open for `path`: `/dev/videoN` itself, or a
/// link under `/dev/v4l/` that resolves to one. No `.` or `..` components;
/// anything else under `/dev` (disks, TPMs, memory) is refused. Err(None)
/// for a path of the right shape that does not exist.
pub fn video_device(path: &Path) -> Result<PathBuf, Option<NotAVideoDevice>> {
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let under_v4l = path
        .strip_prefix("/dev/v4l")
        .is_ok_and(|rest| !rest.as_os_str().is_empty());
    if !plain || !(is_video_node(path) || under_v4l) {
        return Err(Some(NotAVideoDevice));
    }
    let real = std::fs::canonicalize(path).map_err(|_| None)?;
    if !is_video_node(&real) {
        return Err(Some(NotAVideoDevice));
    }
    Ok(real)
}

/// Tries a V4L2 device (already checked with [`video_device`]): whether this
/// build records one of its formats, and that format's first size.
pub fn probe_v4l2(device: &Path) -> Verdict {
    let report = super::v4l2::probe_device(device);
    if report.error.is_some() && report.formats.is_empty() {
        return Verdict::fails("unreachable");
    }
    if !report.capture {
        return Verdict::fails("no video");
    }
    let recorded = report
        .formats
        .iter()
        .find_map(|f| f.vigil.map(|codec| (codec, f.sizes.first().and_then(|s| size_of(s)))));
    match recorded {
        Some((codec, size)) => {
            let (w, h) = size.unwrap_or((0, 0));
            Verdict::works(codec, w, h)
        }
        None => Verdict::fails("no video"),
    }
}

/// `640x480@30,15` → (640, 480).
fn size_of(s: &str) -> Option<(u32, u32)> {
    let wh = s.split('@').next()?;
    let (w, h) = wh.split_once('x')?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_video_nodes_may_be_probed() {
        for bad in [
            "/dev/sda",
            "/dev/tpm0",
            "/dev/mem",
            "/dev/video0/../sda",
            "/dev/v4l/../sda",
            "/dev/videox",
            "/dev/video",
            "dev/video0",
            "/etc/passwd",
            "/dev/v4l",
        ] {
            assert_eq!(video_device(Path::new(bad)), Err(Some(NotAVideoDevice)), "{bad}");
        }
        // The right shape, but no such device on this host.
        assert_eq!(video_device(Path::new("/dev/video987")), Err(None));
        assert_eq!(video_device(Path::new("/dev/v4l/by-id/none")), Err(None));
    }

    #[test]
    fn a_v4l_link_to_something_else_is_refused() {
        // /dev/v4l links must resolve to a video node: check the rule on a
        // path that exists and is not one.
        assert!(!is_video_node(Path::new("/dev/null")));
        assert!(is_video_node(Path::new("/dev/video12")));
        assert!(!is_video_node(Path::new("/dev/v4l/video0")));
    }

    #[test]
    fn verdicts_carry_no_remote_bytes() {
        let v = serde_json::to_value(Verdict::works("h264", 1920, 1080)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ok": true, "codec": "h264", "width": 1920, "height": 1080})
        );
        let v = serde_json::to_value(Verdict::fails("refused")).unwrap();
        assert_eq!(v, serde_json::json!({"ok": false, "error": "refused"}));
        assert_eq!(
            failure_category(&IngestError::Timeout("waiting", Duration::from_secs(1))),
            "timeout"
        );
        assert_eq!(failure_category(&IngestError::NoVideo("audio".into())), "no video");
        assert_eq!(size_of("640x480@30,15"), Some((640, 480)));
        assert_eq!(size_of("garbage"), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_non_rtsp_server_is_not_rtsp() {
        // Bound but not listening: refuses, and no other test can take the port meanwhile.
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = closed.local_addr().unwrap().port();
        let url = url::Url::parse(&format!("rtsp://127.0.0.1:{port}/x")).unwrap();
        assert_eq!(
            probe_rtsp(&url, None, None, Duration::from_secs(5)).await,
            Verdict::fails("refused")
        );
        // A server that answers with something else (a secret banner): only the category comes back.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2 SECRET-BANNER\r\n").await;
            }
        });
        let url = url::Url::parse(&format!("rtsp://127.0.0.1:{port}/x")).unwrap();
        let v = probe_rtsp(&url, None, None, Duration::from_secs(5)).await;
        assert!(matches!(v, Verdict::Fails { .. }), "{v:?}");
        assert!(!serde_json::to_string(&v).unwrap().contains("SECRET"));
    }
}
