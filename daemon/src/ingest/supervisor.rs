//! One reconnect loop for every camera source (RTSP, V4L2): it connects a
//! [`Source`] again and again with capped exponential backoff, tells the
//! recorder the camera's state (`connecting`, `streaming`, `offline`) and
//! when a connection ended, ends a session that delivers nothing for the
//! stall timeout (a camera that hangs with its connection open), offers the
//! frames to the live view and hands them to the recorder in batches, and
//! stops when its shutdown switch flips.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::ingest::live::{LiveAudio, LiveFrame, MAX_HELD_AUDIO};
use crate::storage::recorder::Event;
use vigil_format::media::{AudioFrame, AudioParams, Frame, StreamParams};
use vigil_format::vseg::Codec;

/// Sends at a key frame (the recorder then writes the chunk it closes) or
/// when this much media has been batched: a quarter of a second bounds what
/// a camera holds here (~125 KB at 4 Mbit/s) for four recorder wake-ups a
/// second.
const MAX_BATCH_AGE: Duration = Duration::from_millis(250);

/// Reconnect delays: the first retry after `initial`, x1.5 each failure,
/// capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Backoff {
            next: initial,
            initial,
            cap,
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 3 / 2).min(self.cap);
        d
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// What a session hands over next.
pub enum Delivery {
    /// A frame for the recorder (`params` set when they are (re)stated).
    Frame(Frame),
    /// The session's audio, before its first frame (recorded cameras only).
    AudioParams(std::sync::Arc<AudioParams>),
    /// An audio frame for the recorder.
    Audio(AudioFrame),
    /// The camera's clock minus this box's, in ms, from an RTCP sender report.
    ClockDrift(i64),
    /// The camera sent something that made no frame (a buffer that could
    /// not be used, H.264 before its parameter sets): it is alive.
    Alive,
}

/// A camera the supervisor connects, again after every failure.
pub trait Source: Send {
    type Error: std::fmt::Display + Send;
    type Session: Session<Error = Self::Error>;
    /// The camera's name, for the logs.
    fn camera(&self) -> &str;
    /// Starts one session (connects, opens the device) and logs the attempt.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Session, Self::Error>> + Send;
    /// The error of a session that delivered nothing for `after`.
    fn stalled(&self, after: Duration) -> Self::Error;
}

/// One connected session: it delivers until it fails or the camera ends it.
pub trait Session: Send {
    type Error;
    /// The next delivery; an error (the camera ending the stream is one)
    /// ends the session.
    fn next(&mut self) -> impl Future<Output = Result<Delivery, Self::Error>> + Send;
    /// Ends the session: the frames it captured but had not delivered yet.
    fn close(self) -> impl Future<Output = Vec<Frame>> + Send;
}

/// Why a session ended.
enum Ended<E> {
    Failed(E),
    RecorderGone,
    Shutdown,
}

/// The recorder's queue went away.
struct RecorderGone;

/// Runs one camera until `shutdown` flips to true (or the recorder stops).
pub async fn run<S: Source>(
    mut source: S,
    mut backoff: Backoff,
    stall: Duration,
    live: Option<broadcast::Sender<LiveFrame>>,
    tx: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let camera = source.camera().to_string();
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
        let mut out = Outlet::new(&camera, live.as_ref(), &tx);
        let ended = attend(&mut source, stall, &mut out, &mut shutdown).await;
        // Frames received are never dropped: hand over what is batched.
        out.flush().await;
        if *shutdown.borrow() {
            break;
        }
        let _ = tx.send(Event::Disconnected).await;
        let err = match ended {
            Ended::Failed(e) => e.to_string(),
            Ended::RecorderGone | Ended::Shutdown => break,
        };
        if out.streamed {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(camera = %camera, error = %err, retry_in_ms = delay.as_millis() as u64, "camera offline");
        let _ = tx
            .send(Event::State {
                state: "offline",
                error: Some(err),
            })
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// One session, from connecting to its end: the frames go to `out`, a
/// session that delivers nothing for `stall` is ended by the watchdog.
async fn attend<S: Source>(
    source: &mut S,
    stall: Duration,
    out: &mut Outlet<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended<S::Error> {
    let mut session = tokio::select! {
        r = source.connect() => match r {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e),
        },
        _ = shutdown.changed() => return Ended::Shutdown,
    };
    // One watchdog timer, pushed forward by video (a frame, or something that
    // made none): audio or a clock reading alone does not keep a camera whose
    // picture stopped "streaming".
    let watchdog = tokio::time::sleep(stall);
    tokio::pin!(watchdog);
    let ended = loop {
        let delivery = tokio::select! {
            biased;
            _ = shutdown.changed() => break Ended::Shutdown,
            d = session.next() => match d {
                Ok(d) => d,
                Err(e) => break Ended::Failed(e),
            },
            _ = &mut watchdog => break Ended::Failed(source.stalled(stall)),
        };
        if matches!(delivery, Delivery::Frame(_) | Delivery::Alive) {
            watchdog.as_mut().reset(Instant::now() + stall);
        }
        let handed = match delivery {
            Delivery::Frame(f) => out.push(f).await,
            Delivery::AudioParams(p) => {
                out.live_audio_params = Some(p.clone());
                out.tx.send(Event::AudioParams(p)).await.map_err(|_| RecorderGone)
            }
            Delivery::Audio(a) => {
                // Held until the next video batch; bounded (the watchdog ends a
                // session whose video stopped, but not before this fills).
                if out.audio.len() >= MAX_HELD_RECORDED_AUDIO {
                    out.audio.remove(0);
                }
                if out.live.is_some_and(|l| l.receiver_count() > 0) && out.live_audio.len() < MAX_HELD_AUDIO {
                    out.live_audio.push(AudioFrame {
                        pts: a.pts,
                        video_pts: a.video_pts,
                        duration: a.duration,
                        data: a.data.clone(),
                    });
                }
                out.audio.push(a);
                Ok(())
            }
            Delivery::ClockDrift(ms) => out.tx.send(Event::ClockDrift(ms)).await.map_err(|_| RecorderGone),
            Delivery::Alive => Ok(()),
        };
        if handed.is_err() {
            break Ended::RecorderGone;
        }
    };
    for f in session.close().await {
        if out.push(f).await.is_err() {
            return Ended::RecorderGone;
        }
    }
    ended
}

/// Audio frames held for the next video batch at most (~20 s of AAC at
/// 48 kHz, ~40 s of G.711 in 20 ms packets).
const MAX_HELD_RECORDED_AUDIO: usize = 2000;

/// Where a session's frames go: the live view as they arrive, the recorder
/// in batches; the first one makes the camera `streaming`.
struct Outlet<'a> {
    camera: &'a str,
    live: Option<&'a broadcast::Sender<LiveFrame>>,
    tx: &'a mpsc::Sender<Event>,
    batch: Vec<Frame>,
    /// Audio frames, handed over just before the video batch they came with.
    audio: Vec<AudioFrame>,
    batch_started: Instant,
    live_params: Option<std::sync::Arc<StreamParams>>,
    /// The session's audio track, and its frames since the last video frame
    /// (held only while someone watches), for the live view.
    live_audio_params: Option<std::sync::Arc<AudioParams>>,
    live_audio: Vec<AudioFrame>,
    streamed: bool,
}

impl<'a> Outlet<'a> {
    fn new(camera: &'a str, live: Option<&'a broadcast::Sender<LiveFrame>>, tx: &'a mpsc::Sender<Event>) -> Self {
        Outlet {
            camera,
            live,
            tx,
            batch: Vec::new(),
            audio: Vec::new(),
            batch_started: Instant::now(),
            live_params: None,
            live_audio_params: None,
            live_audio: Vec::new(),
            streamed: false,
        }
    }

    async fn push(&mut self, f: Frame) -> Result<(), RecorderGone> {
        if !self.streamed {
            self.streamed = true;
            tracing::info!(camera = %self.camera, "streaming");
            self.tx
                .send(Event::State {
                    state: "streaming",
                    error: None,
                })
                .await
                .map_err(|_| RecorderGone)?;
        }
        let now = Instant::now();
        if self.batch.is_empty() {
            self.batch_started = now;
        }
        if let Some(p) = &f.params {
            self.live_params = Some(p.clone());
        }
        if let (Some(live), Some(p)) = (self.live, &self.live_params) {
            // The live view plays H.264 and H.265, not MJPEG; copied only
            // while someone watches.
            if p.codec != Codec::Mjpeg && live.receiver_count() > 0 {
                let audio = self.live_audio_params.as_ref().map(|a| {
                    std::sync::Arc::new(LiveAudio {
                        params: a.clone(),
                        frames: std::mem::take(&mut self.live_audio),
                    })
                });
                let _ = live.send(LiveFrame {
                    pts: f.pts,
                    key: f.key,
                    data: bytes::Bytes::copy_from_slice(&f.data),
                    params: p.clone(),
                    audio,
                });
            }
        }
        // Audio not sent with this frame (nobody watches, or no picture to
        // carry it) is not kept for a later one.
        self.live_audio.clear();
        let key = f.key;
        self.batch.push(f);
        if key || now.duration_since(self.batch_started) >= MAX_BATCH_AGE {
            if !self.audio.is_empty() {
                self.tx
                    .send(Event::Audio(std::mem::take(&mut self.audio)))
                    .await
                    .map_err(|_| RecorderGone)?;
            }
            self.tx
                .send(Event::Frames(std::mem::take(&mut self.batch)))
                .await
                .map_err(|_| RecorderGone)?;
        }
        Ok(())
    }

    async fn flush(&mut self) {
        if !self.audio.is_empty() {
            let _ = self.tx.send(Event::Audio(std::mem::take(&mut self.audio))).await;
        }
        if !self.batch.is_empty() {
            let _ = self.tx.send(Event::Frames(std::mem::take(&mut self.batch))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    #[test]
    fn backoff_starts_under_a_second_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        assert!(b.next_delay() < Duration::from_secs(1));
        let mut total = Duration::ZERO;
        for _ in 0..20 {
            total += b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(30));
        assert!(total > Duration::from_secs(60));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    /// What a fake session does, step by step; past the last step it hangs.
    enum Step {
        Frame { key: bool },
        Alive,
        Wait(Duration),
        Fail(&'static str),
    }

    #[derive(Debug)]
    struct FakeError(String);

    impl std::fmt::Display for FakeError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    /// A camera that follows a script: one entry per connection attempt
    /// (a refused connection or a session's steps); past the last, connecting
    /// hangs.
    struct Fake {
        attempts: VecDeque<Result<Vec<Step>, &'static str>>,
        /// Frames a session still holds when it is closed.
        held_at_close: usize,
        connected_at: Arc<Mutex<Vec<Instant>>>,
    }

    struct FakeSession {
        steps: VecDeque<Step>,
        held_at_close: usize,
    }

    fn frame(key: bool) -> Frame {
        Frame {
            pts: 0,
            key,
            data: Vec::new(),
            params: None,
        }
    }

    impl Source for Fake {
        type Error = FakeError;
        type Session = FakeSession;
        fn camera(&self) -> &str {
            "fake"
        }
        async fn connect(&mut self) -> Result<FakeSession, FakeError> {
            if let Ok(mut at) = self.connected_at.lock() {
                at.push(Instant::now());
            }
            match self.attempts.pop_front() {
                None => std::future::pending().await,
                Some(Err(e)) => Err(FakeError(e.into())),
                Some(Ok(steps)) => Ok(FakeSession {
                    steps: steps.into(),
                    held_at_close: self.held_at_close,
                }),
            }
        }
        fn stalled(&self, after: Duration) -> FakeError {
            FakeError(format!("stalled after {after:?}"))
        }
    }

    impl Session for FakeSession {
        type Error = FakeError;
        async fn next(&mut self) -> Result<Delivery, FakeError> {
            loop {
                match self.steps.pop_front() {
                    None => std::future::pending::<()>().await,
                    Some(Step::Frame { key }) => return Ok(Delivery::Frame(frame(key))),
                    Some(Step::Alive) => return Ok(Delivery::Alive),
                    Some(Step::Wait(d)) => tokio::time::sleep(d).await,
                    Some(Step::Fail(e)) => return Err(FakeError(e.into())),
                }
            }
        }
        async fn close(self) -> Vec<Frame> {
            (0..self.held_at_close).map(|_| frame(false)).collect()
        }
    }

    /// A running supervisor over a fake camera, with what it told the recorder.
    struct Harness {
        events: mpsc::Receiver<Event>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        connected_at: Arc<Mutex<Vec<Instant>>>,
        started: Instant,
    }

    const STALL: Duration = Duration::from_secs(5);

    fn start(attempts: Vec<Result<Vec<Step>, &'static str>>, held_at_close: usize, backoff: Backoff) -> Harness {
        let connected_at = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            attempts: attempts.into(),
            held_at_close,
            connected_at: connected_at.clone(),
        };
        let (tx, events) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(fake, backoff, STALL, None, tx, stop_rx));
        Harness {
            events,
            stop,
            task,
            connected_at,
            started: Instant::now(),
        }
    }

    fn usual_backoff() -> Backoff {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }

    fn describe(e: &Event) -> String {
        match e {
            Event::Frames(f) => format!("frames {}", f.len()),
            Event::Disconnected => "disconnected".into(),
            Event::AudioParams(_) => "audio params".into(),
            Event::Audio(a) => format!("audio {}", a.len()),
            Event::ClockDrift(ms) => format!("clock drift {ms} ms"),
            Event::State { state, error: None } => state.to_string(),
            Event::State { state, error: Some(e) } => format!("{state}: {e}"),
        }
    }

    impl Harness {
        /// The next `n` events, described.
        async fn next(&mut self, n: usize) -> Vec<String> {
            let mut v = Vec::new();
            for _ in 0..n {
                match self.events.recv().await {
                    Some(e) => v.push(describe(&e)),
                    None => v.push("closed".into()),
                }
            }
            v
        }
        /// The gaps between connection attempts, in milliseconds.
        fn gaps_ms(&self) -> Vec<u128> {
            let at = self.connected_at.lock().map(|a| a.clone()).unwrap_or_default();
            at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
        }
        /// Flips the switch; the events sent until the task ended.
        async fn shut_down(mut self) -> Vec<String> {
            let _ = self.stop.send(true);
            self.task.await.unwrap();
            let mut v = Vec::new();
            while let Ok(e) = self.events.try_recv() {
                v.push(describe(&e));
            }
            v
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_growing_delays() {
        let mut h = start(vec![Err("refused"), Err("refused"), Err("refused")], 0, usual_backoff());
        // Every attempt ends with a Disconnected (a no-op for the recorder
        // when nothing was recorded).
        let attempt = ["connecting", "disconnected", "offline: refused"];
        let events = h.next(10).await;
        assert_eq!(
            events,
            [&attempt[..], &attempt[..], &attempt[..], &["connecting"]].concat()
        );
        assert_eq!(h.gaps_ms(), [500, 750, 1125]);
        assert_eq!(h.shut_down().await, Vec::<String>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_streamed_resets_the_backoff() {
        let streamed = vec![Step::Frame { key: true }, Step::Fail("cut")];
        let mut h = start(
            vec![Err("refused"), Err("refused"), Ok(streamed), Err("refused")],
            0,
            usual_backoff(),
        );
        h.next(15).await;
        assert_eq!(h.gaps_ms(), [500, 750, 500, 750]);
        h.shut_down().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_recorder_hears_the_states_in_order() {
        let steps = vec![
            Step::Frame { key: true },
            Step::Frame { key: false },
            Step::Wait(Duration::from_millis(100)),
            Step::Frame { key: false },
            Step::Fail("the camera ended the stream"),
        ];
        let mut h = start(vec![Ok(steps)], 0, usual_backoff());
        assert_eq!(
            h.next(7).await,
            [
                "connecting",
                "streaming",
                // The key frame goes at once, the rest when the session ends.
                "frames 1",
                "frames 2",
                "disconnected",
                "offline: the camera ended the stream",
                "connecting"
            ]
        );
        h.shut_down().await;
    }

    #[tokio::test(start_paused = true)]
    async fn frames_go_in_batches_of_at_most_a_quarter_second() {
        let mut steps = vec![Step::Frame { key: true }];
        for _ in 0..25 {
            steps.push(Step::Wait(Duration::from_millis(100)));
            steps.push(Step::Frame { key: false });
        }
        steps.push(Step::Fail("cut"));
        let mut h = start(vec![Ok(steps)], 0, usual_backoff());
        // A batch is sent when its first frame is 250 ms old (4 frames 100 ms
        // apart); the one left when the session ends.
        let mut want = vec!["connecting", "streaming", "frames 1"];
        want.extend(["frames 4"; 6]);
        want.extend(["frames 1", "disconnected", "offline: cut"]);
        assert_eq!(h.next(want.len()).await, want);
        h.shut_down().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_backoff_wait_at_once() {
        let long = Duration::from_secs(30);
        let mut h = start(vec![Err("refused")], 0, Backoff::new(long, long));
        assert_eq!(h.next(3).await, ["connecting", "disconnected", "offline: refused"]);
        let offline_at = Instant::now();
        let started = h.started;
        assert_eq!(h.shut_down().await, Vec::<String>::new());
        assert!(Instant::now() - offline_at < Duration::from_millis(10));
        assert!(Instant::now() - started < long);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_hands_over_the_frames_a_session_still_holds() {
        let mut h = start(vec![Ok(vec![Step::Frame { key: true }])], 2, usual_backoff());
        assert_eq!(h.next(3).await, ["connecting", "streaming", "frames 1"]);
        assert_eq!(h.shut_down().await, ["frames 2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_session_is_ended_by_the_watchdog() {
        let mut h = start(vec![Ok(vec![Step::Frame { key: true }])], 0, usual_backoff());
        assert_eq!(h.next(3).await, ["connecting", "streaming", "frames 1"]);
        let frame_at = Instant::now();
        assert_eq!(h.next(2).await, ["disconnected", "offline: stalled after 5s"]);
        assert_eq!(Instant::now() - frame_at, STALL);
        h.shut_down().await;
    }

    #[tokio::test(start_paused = true)]
    async fn signs_of_life_keep_the_watchdog_away() {
        let mut steps = Vec::new();
        for _ in 0..4 {
            steps.push(Step::Wait(Duration::from_secs(3)));
            steps.push(Step::Alive);
        }
        steps.push(Step::Fail("cut"));
        let mut h = start(vec![Ok(steps)], 0, usual_backoff());
        assert_eq!(h.next(3).await, ["connecting", "disconnected", "offline: cut"]);
        assert_eq!(Instant::now() - h.started, Duration::from_secs(12));
        h.shut_down().await;
    }
}
