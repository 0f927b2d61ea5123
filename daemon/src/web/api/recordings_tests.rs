//! Footage and live streams against a real server on loopback (plain
//! HTTP/1.1 over TCP, the same route table and handlers as the HTTPS
//! server, on a runtime shaped like the daemon's: 2 workers, 8 blocking
//! threads): streams whose responses are never read must not stall the rest
//! of the API, each caller gets at most 4 at once (`view.json` included),
//! the footage that leaves is audited, and a live stream of a camera that
//! goes silent ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db::users::{self, Role};
use crate::storage::recorder::{Event, Recorder, RecorderConfig};
use crate::storage::recorder_rig::{params, FRAME, FRAME_MS, T0};
use crate::web::AppState;
use vigil_format::media::Frame;

struct Server {
    _dir: tempfile::TempDir,
    st: Arc<AppState>,
    addr: SocketAddr,
}

/// A 12 s recording of camera "cam" with 10 KiB frames (about 3 MB of
/// footage), and a server with small socket buffers, so that a client that
/// does not read pushes back on the server quickly.
async fn server() -> Server {
    server_of(params(64)).await
}

/// The same, with stream parameters `p` (H.264 or a stand-in H.265).
async fn server_of(p: Arc<vigil_format::media::StreamParams>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let st = crate::web::tests_support::app_state(dir.path());
    let (db, keyring, storage) = (st.db_path.clone(), st.keyring.clone(), st.storage.clone());
    let clock = crate::base::clock::ManualClock::new(T0);
    {
        let index = crate::db::Index::open(&db).unwrap();
        let camera_id = index.camera_id("cam").unwrap();
        let mut rec = Recorder::new(
            RecorderConfig {
                camera_id,
                camera: "cam".into(),
                segment_duration: Duration::from_secs(600),
                sync_interval: std::time::Duration::ZERO,
                import_start_wall_ns: None,
                clock: clock.clone(),
                offline_alert_after_ns: None,
                gap_alert_after_ns: None,
            },
            storage.clone(),
            index,
            keyring.clone(),
        )
        .unwrap();
        for n in 0..300i64 {
            let frame = Frame {
                pts: n * FRAME,
                key: n % 25 == 0,
                data: vec![n as u8; 10 * 1024],
                params: (n == 0).then(|| p.clone()),
            };
            rec.handle(Event::Frames(vec![frame]));
            clock.advance_ms(FRAME_MS);
        }
        rec.close("stopped");
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Accepted sockets inherit the listener's small send buffer (Linux).
    socket.set_send_buffer_size(8 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let state = st.clone();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let st = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, std::convert::Infallible>(crate::web::routes::handle(st, req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Server { _dir: dir, st, addr }
}

/// A token for a new user of that role (a token needs a live owner).
async fn token(st: &Arc<AppState>, name: &str, role: Role) -> String {
    let name = name.to_string();
    st.db(move |idx| {
        let clock = crate::base::clock::SystemClock;
        let owner = format!("owner-{name}");
        users::add(
            idx,
            "cli:test",
            &owner,
            role,
            "correct horse battery staple 7",
            false,
            &clock,
        )
        .map_err(|e| crate::web::reply::ApiError::internal(e.to_string()))?;
        let new = crate::db::tokens::NewToken {
            owner,
            name,
            role: Some(role),
            expires_in_days: None,
            cameras: None,
        };
        let created = crate::db::tokens::create(idx, "cli:test", new, &clock)
            .map_err(|e| crate::web::reply::ApiError::internal(e.to_string()))?;
        Ok(created.secret.to_string())
    })
    .await
    .unwrap()
}

/// Sends a GET and returns the open connection without reading anything.
async fn send(addr: SocketAddr, path: &str, token: &str, extra: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// A whole response (the connection is closed after it): code, head, body.
async fn get(addr: SocketAddr, path: &str, token: &str) -> (u16, String, Vec<u8>) {
    let mut c = send(addr, path, token, "Connection: close\r\n").await;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    let code = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head, all[split..].to_vec())
}

/// The status code and headers of a response (the body is left unread).
async fn head(s: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0, "connection closed before the head");
        buf.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

const VIEW: &str = "/api/v1/cameras/cam/view.mp4?start=2023-11-14T22:00:00Z&end=2023-11-14T23:00:00Z";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn ten_unread_streams_do_not_stall_the_api() {
    runtime().block_on(async {
        let s = server().await;
        // Three viewers (at most 4 streams each): 10 streams over the whole archive, never read.
        let mut tokens = Vec::new();
        for n in 0..3 {
            tokens.push(token(&s.st, &format!("v{n}"), Role::Viewer).await);
        }
        let mut stalled = Vec::new();
        for i in 0..10 {
            let mut c = send(s.addr, VIEW, &tokens[i / 4], "").await;
            let (code, h) = tokio::time::timeout(Duration::from_secs(10), head(&mut c))
                .await
                .unwrap();
            assert_eq!(code, 200, "{h}");
            stalled.push(c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // let them fill every buffer
        for round in 0..3 {
            let t0 = std::time::Instant::now();
            let mut c = send(s.addr, "/api/v1/me", &tokens[0], "").await;
            let (code, h) = tokio::time::timeout(Duration::from_secs(1), head(&mut c))
                .await
                .unwrap_or_else(|_| panic!("/api/v1/me did not answer within 1 s (round {round})"));
            assert_eq!(code, 200, "{h}");
            assert!(t0.elapsed() < Duration::from_secs(1));
        }
        // A fifth stream of one caller is refused, with Retry-After.
        let mut c = send(s.addr, VIEW, &tokens[0], "").await;
        let (code, h) = head(&mut c).await;
        assert_eq!(code, 429, "{h}");
        assert!(h.to_lowercase().contains("retry-after: 5"), "{h}");
        drop(stalled);
    });
}

#[test]
fn a_range_download_is_audited_with_its_bytes_and_a_camera_outside_the_set_is_refused() {
    runtime().block_on(async {
        let s = server().await;
        let op = token(&s.st, "op", Role::Operator).await;
        let mut c = send(s.addr, &format!("{VIEW}&download=1"), &op, "Range: bytes=100-1099\r\n").await;
        let (code, h) = head(&mut c).await;
        assert_eq!(code, 206, "{h}");
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut body)).await;
        drop(c);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let st = s.st.clone();
        let entries = st.db(|idx| Ok(crate::db::audit::tail(idx.conn(), 50)?)).await.unwrap();
        let start = entries
            .iter()
            .find(|e| e.action == "footage.download")
            .expect("the Range download is audited");
        assert_eq!((start.actor.as_str(), start.target.as_str()), ("token:op", "cam"));
        assert!(start.detail.contains("bytes 100-1099 of"), "{}", start.detail);

        // The end entry comes once the window has passed; at shutdown, close_idle writes it.
        s.st.egress.close_idle();
        let entries = st.db(|idx| Ok(crate::db::audit::tail(idx.conn(), 50)?)).await.unwrap();
        let end = entries
            .iter()
            .find(|e| e.action == "footage.download.end")
            .expect("the end is audited");
        assert!(end.detail.starts_with("bytes=1000 in 1 request"), "{}", end.detail);

        // A caller limited to another camera: 403, and the refusal is audited.
        let caller = crate::web::auth::Caller {
            actor: "user:limited".into(),
            user_id: Some(99),
            role: Role::Viewer,
            csrf: None,
            cookie: None,
            must_change_password: false,
            cameras: Some(vec!["other".into()]),
        };
        let e = super::require_view(&s.st, &caller, "cam", "footage.play")
            .await
            .unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::FORBIDDEN);
        let entries = st.db(|idx| Ok(crate::db::audit::tail(idx.conn(), 1)?)).await.unwrap();
        assert_eq!(
            (
                entries[0].actor.as_str(),
                entries[0].action.as_str(),
                entries[0].outcome.as_str()
            ),
            ("user:limited", "footage.play", "denied")
        );
        assert!(super::require_view(&s.st, &caller, "other", "footage.play")
            .await
            .is_ok());
    });
}

#[test]
fn view_json_describes_the_view_and_no_footage_leaves() {
    runtime().block_on(async {
        let s = server().await;
        let v = token(&s.st, "v", Role::Viewer).await;
        let (code, h, body) = get(s.addr, &VIEW.replace("view.mp4", "view.json"), &v).await;
        assert_eq!(code, 200, "{h}");
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let first = j["first_frame"].as_str().unwrap();
        assert!(first.starts_with("2023-11-14T22:13:20") && first.ends_with('Z'), "{j}");
        assert_eq!(j["codec"], "h264", "{j}");
        let entries =
            s.st.db(|idx| Ok(crate::db::audit::tail(idx.conn(), 50)?))
                .await
                .unwrap();
        assert!(
            !entries.iter().any(|e| e.action.starts_with("footage.")),
            "view.json is not egress"
        );
        // Its length is the view's.
        let (code, h, mp4) = get(s.addr, VIEW, &v).await;
        assert_eq!(code, 200, "{h}");
        assert_eq!(j["bytes"].as_u64(), Some(mp4.len() as u64));
        // ?codec=h264 changes nothing for an H.264 range (Range support included).
        let (code, h, same) = get(s.addr, &format!("{VIEW}&codec=h264"), &v).await;
        assert_eq!(code, 200, "{h}");
        assert!(h.to_lowercase().contains("accept-ranges: bytes"), "{h}");
        assert_eq!(same, mp4);
        let empty = "/api/v1/cameras/cam/view.json?start=2000-01-01T00:00:00Z&end=2000-01-01T00:01:00Z";
        assert_eq!(get(s.addr, empty, &v).await.0, 404);
    });
}

#[test]
fn view_json_takes_a_stream_slot_and_refuses_a_range_over_31_days() {
    runtime().block_on(async {
        let s = server().await;
        let v = token(&s.st, "v", Role::Viewer).await;
        let json = VIEW.replace("view.mp4", "view.json");
        let long = "/api/v1/cameras/cam/view.json?start=2023-10-01T00:00:00Z&end=2023-11-14T23:00:00Z";
        let (code, h, body) = get(s.addr, long, &v).await;
        assert_eq!(code, 400, "{h}");
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["error"], "the range is longer than 31 days");
        // With every footage stream of the caller open, view.json waits its turn too.
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut c = send(s.addr, VIEW, &v, "").await;
            assert_eq!(head(&mut c).await.0, 200);
            open.push(c);
        }
        let (code, h, _) = get(s.addr, &json, &v).await;
        assert_eq!(code, 429, "{h}");
        drop(open);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(s.addr, &json, &v).await.0, 200);
        // Its slot is given back: four streams open again.
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut c = send(s.addr, VIEW, &v, "").await;
            assert_eq!(head(&mut c).await.0, 200);
            open.push(c);
        }
    });
}

#[test]
fn a_live_stream_of_a_camera_that_goes_silent_ends() {
    runtime().block_on(async {
        let s = server().await;
        let v = token(&s.st, "v", Role::Viewer).await;
        // The camera stays connected (its channel lives) and sends key frames
        // until the stream has started, then nothing.
        let camera = s.st.live.tap("cam").unwrap();
        let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, on) = (camera.clone(), sending.clone());
        tokio::spawn(async move {
            let mut pts = 0;
            while on.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = tx.send(crate::ingest::live::LiveFrame {
                    pts,
                    key: true,
                    data: bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                    params: params(64),
                    audio: None,
                });
                pts += FRAME;
                tokio::time::sleep(Duration::from_millis(FRAME_MS as u64)).await;
            }
        });
        let mut c = send(s.addr, "/api/v1/cameras/cam/live.mp4", &v, "Connection: close\r\n").await;
        let (code, h) = tokio::time::timeout(Duration::from_secs(10), head(&mut c))
            .await
            .unwrap();
        assert_eq!(code, 200, "{h}");
        sending.store(false, std::sync::atomic::Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "the stream of a silent camera ends");
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
        drop(camera);
    });
}

/// Stand-in H.265 parameters (an `hvc1` entry; the samples are not real H.265).
#[cfg(not(feature = "ffmpeg"))]
fn h265_params() -> Arc<vigil_format::media::StreamParams> {
    let p = params(64);
    let mut entry = p.sample_entry.clone();
    for (from, to) in [(b"avc1", b"hvc1"), (b"avcC", b"hvcC")] {
        if let Some(i) = entry.windows(4).position(|w| w == from) {
            entry[i..i + 4].copy_from_slice(to);
        }
    }
    Arc::new(vigil_format::media::StreamParams {
        codec: vigil_format::vseg::Codec::H265,
        timescale: p.timescale,
        width: p.width,
        height: p.height,
        sample_entry: entry,
    })
}

#[cfg(not(feature = "ffmpeg"))]
#[test]
fn without_ffmpeg_an_h265_range_cannot_be_converted() {
    runtime().block_on(async {
        let s = server_of(h265_params()).await;
        let v = token(&s.st, "v", Role::Viewer).await;
        let (code, h, body) = get(s.addr, &format!("{VIEW}&codec=h264"), &v).await;
        assert_eq!(code, 501, "{h}");
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["error"], "this build cannot convert H.265 for the browser");
        let (_, _, body) = get(s.addr, &VIEW.replace("view.mp4", "view.json"), &v).await;
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["codec"], "h265", "{j}");
        // Unconverted, it plays as before.
        assert_eq!(get(s.addr, VIEW, &v).await.0, 200);
        let (code, _, body) = get(s.addr, "/api/v1/transcode", &v).await;
        assert_eq!(code, 200);
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"available": false, "encoder": null, "max_sessions": 2, "in_use": 0})
        );
    });
}

/// The body of a chunked HTTP response read so far (an unfinished last
/// chunk left out).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let Ok(n) = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("x").trim(), 16) else {
            break;
        };
        let Some(data) = b.get(eol + 2..eol + 2 + n) else { break };
        out.extend_from_slice(data);
        b = b.get(eol + 4 + n..).unwrap_or_default();
        if n == 0 {
            break;
        }
    }
    out
}

#[test]
fn a_live_stream_asked_for_with_audio_carries_the_cameras_aac() {
    runtime().block_on(async {
        let s = server().await;
        let v = token(&s.st, "v", Role::Viewer).await;
        // A camera with AAC (16 kHz mono, 1024-sample packets): each frame
        // carries the packets that play before the next frame.
        let camera = s.st.live.tap("cam").unwrap();
        let track = Arc::new(vigil_format::vseg::AudioTrack {
            codec: vigil_format::vseg::AudioCodec::Aac,
            sample_rate: 16_000,
            channels: 1,
            config: vec![0x14, 0x08],
        });
        let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, on) = (camera.clone(), sending.clone());
        tokio::spawn(async move {
            let (mut n, mut k) = (0i64, 0i64);
            while on.load(std::sync::atomic::Ordering::SeqCst) {
                let mut frames = Vec::new();
                while k * 5760 < (n + 1) * FRAME {
                    frames.push(vigil_format::media::AudioFrame {
                        pts: k * 1024,
                        video_pts: k * 5760,
                        duration: 1024,
                        data: vec![k as u8; 100],
                    });
                    k += 1;
                }
                let audio = Some(Arc::new(crate::ingest::live::LiveAudio {
                    params: track.clone(),
                    frames,
                }));
                let _ = tx.send(crate::ingest::live::LiveFrame {
                    pts: n * FRAME,
                    key: true,
                    data: bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                    params: params(64),
                    audio,
                });
                n += 1;
                tokio::time::sleep(Duration::from_millis(FRAME_MS as u64)).await;
            }
        });
        // Without audio=1: the picture alone, as before.
        let mut c = send(s.addr, "/api/v1/cameras/cam/live", &v, "Connection: close\r\n").await;
        let (code, h) = tokio::time::timeout(Duration::from_secs(10), head(&mut c))
            .await
            .unwrap();
        assert_eq!(code, 200, "{h}");
        assert!(!h.to_ascii_lowercase().contains("x-vigil-audio"), "{h}");
        drop(c);
        let mut c = send(s.addr, "/api/v1/cameras/cam/live?audio=1", &v, "Connection: close\r\n").await;
        let mut all = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_millis(2500);
        let mut b = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout_at(until, c.read(&mut b)).await {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&b[..n]);
        }
        sending.store(false, std::sync::atomic::Ordering::SeqCst);
        drop(c);
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let h = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
        assert!(h.starts_with("http/1.1 200"), "{h}");
        assert!(h.contains("x-vigil-audio: aac\r\n"), "{h}");
        assert!(h.contains("x-audio-codec: mp4a.40.2\r\n"), "{h}");
        let body = dechunk(&all[split..]);
        assert!(body.windows(4).any(|w| w == b"soun"), "an audio track");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("live.mp4");
        std::fs::write(&out, &body).unwrap();
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "quiet", "-show_entries", "packet=stream_index,pts_time"])
            .args(["-of", "csv=p=0"])
            .arg(&out)
            .output();
        let Ok(probe) = probe else {
            println!("SKIPPED: no ffprobe");
            return;
        };
        // Per stream: its first and last packet's pts, in seconds (ffprobe
        // gives a fragment's packets no duration here).
        let mut span = [(f64::MAX, f64::MIN); 2];
        for l in String::from_utf8_lossy(&probe.stdout).lines() {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            if let [i, pts, ..] = v[..] {
                let s = &mut span[i as usize];
                *s = (s.0.min(pts), s.1.max(pts));
            }
        }
        println!("live: video {:?}, audio {:?}", span[0], span[1]);
        assert!(span[0].1 - span[0].0 > 1.5, "{span:?}");
        assert!((span[0].0 - span[1].0).abs() <= 0.1, "{span:?}");
        assert!((span[0].1 - span[1].1).abs() <= 0.1, "{span:?}");
        drop(camera);
    });
}
