//! Live view: each camera's ingest offers its frames on a bounded broadcast
//! channel as they arrive (before batching for the recorder), only while
//! someone watches. Viewers that fall behind are cut off, never buffered
//! without bound. A camera's sub stream has a channel of its own, named
//! as the recorded sub stream is (`<camera>.sub`). A camera whose audio is
//! recorded has its audio ride on the video frames: each frame carries the
//! audio that arrived since the frame before it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast;

use vigil_format::media::{AudioFrame, AudioParams, StreamParams};

/// Frames held for viewers: about 2.5 s at 25 fps.
const CAPACITY: usize = 64;

#[derive(Clone, Debug)]
pub struct LiveFrame {
    pub pts: i64,
    pub key: bool,
    pub data: Bytes,
    pub params: Arc<StreamParams>,
    /// The camera's audio, when its session has an audio track (set up
    /// only for a camera whose audio is recorded); None otherwise.
    pub audio: Option<Arc<LiveAudio>>,
}

/// The audio that arrived since the frame before, and its track (on every
/// frame of a session with audio, `frames` possibly empty).
#[derive(Debug)]
pub struct LiveAudio {
    pub params: Arc<AudioParams>,
    pub frames: Vec<AudioFrame>,
}

/// Audio frames held for the next video frame at most (about 4 s of AAC at
/// 16 kHz): a camera that sends sound but no pictures holds no more.
pub const MAX_HELD_AUDIO: usize = 64;

/// The channels of the running cameras (added and removed at run time).
#[derive(Default)]
pub struct LiveHub {
    cams: std::sync::Mutex<HashMap<String, broadcast::Sender<LiveFrame>>>,
}

impl LiveHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sending side, for the camera's ingest (made on first use).
    pub fn tap(&self, camera: &str) -> Option<broadcast::Sender<LiveFrame>> {
        let mut m = self.cams.lock().ok()?;
        Some(
            m.entry(camera.to_string())
                .or_insert_with(|| broadcast::channel(CAPACITY).0)
                .clone(),
        )
    }

    /// A viewer's receiver; None for a camera that is not running.
    pub fn subscribe(&self, camera: &str) -> Option<broadcast::Receiver<LiveFrame>> {
        self.cams.lock().ok()?.get(camera).map(|s| s.subscribe())
    }

    /// How many viewers `camera`'s stream has now (0 for one not running): a
    /// stream that only feeds live view (a sub stream that is not recorded)
    /// connects while this is above 0.
    pub fn watchers(&self, camera: &str) -> usize {
        self.cams
            .lock()
            .ok()
            .and_then(|m| m.get(camera).map(|s| s.receiver_count()))
            .unwrap_or(0)
    }

    /// A camera stopped: its viewers see the stream end.
    pub fn remove(&self, camera: &str) {
        if let Ok(mut m) = self.cams.lock() {
            m.remove(camera);
        }
    }
}

/// Why no frame came.
#[derive(Debug, PartialEq, Eq)]
pub enum NoFrame {
    /// The camera is not running.
    NotRunning,
    /// Running, but no key frame within the time allowed.
    NotStreaming,
}

impl LiveHub {
    /// Subscribes to `camera` and waits (at most `limit`) for its next key
    /// frame: where a live stream or a snapshot starts.
    pub async fn next_key_frame(
        &self,
        camera: &str,
        limit: std::time::Duration,
    ) -> Result<(broadcast::Receiver<LiveFrame>, LiveFrame), NoFrame> {
        let mut rx = self.subscribe(camera).ok_or(NoFrame::NotRunning)?;
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(f) if f.key => return Some(f),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(Some(f)) => Ok((rx, f)),
            _ => Err(NoFrame::NotStreaming),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_count_the_subscribed_viewers() {
        let hub = LiveHub::new();
        assert_eq!(hub.watchers("door.sub"), 0, "no channel yet");
        assert!(hub.subscribe("door.sub").is_none());
        let _tap = hub.tap("door.sub");
        assert_eq!(hub.watchers("door.sub"), 0, "the ingest's sender is no viewer");
        let a = hub.subscribe("door.sub");
        let b = hub.subscribe("door.sub");
        assert_eq!(hub.watchers("door.sub"), 2);
        drop(a);
        assert_eq!(hub.watchers("door.sub"), 1);
        drop(b);
        assert_eq!(hub.watchers("door.sub"), 0);
        assert_eq!(hub.watchers("door"), 0, "another camera's channel");
    }
}
