//! Footage leaving the box: every playback (`footage.play`), download
//! (`footage.download`, with or without a Range header), live view
//! (`live.start` / `live.stop`) and snapshot (`live.snapshot`) is audited
//! here, with who, which camera, which range and how many bytes; and the
//! number of footage streams open at once is capped per caller and in total.
//!
//! Each stream is audited **before** its first byte (fail closed: when that
//! entry cannot be written the stream is not served) and again when it ends
//! (`<action>.end`, `live.stop`) with the bytes handed to the connection. A
//! player seeking through one clip sends many Range requests for the same
//! time range: those of one caller, camera, kind and time range within
//! [`DEFAULT_WINDOW`] of each other share one start entry, and their end
//! entry, written once the last of them has been idle for the window, sums
//! their requests and bytes and names the byte span they covered. Every
//! byte of every request lies inside the time range a start entry names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::base::time::format_ns;
use crate::db::audit::{self, Outcome};
use crate::db::Index;

/// How long requests for the same footage share one pair of entries.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Footage streams one caller (a user or a token) may have open at once.
pub const STREAMS_PER_CALLER: usize = 4;
/// Footage streams all callers together may have open at once.
pub const STREAMS_TOTAL: usize = 32;
/// Live streams one person may have open at once (a grid of 16 cameras),
/// counted apart from the footage streams.
pub const LIVE_STREAMS_PER_CALLER: usize = 16;
/// Live streams all callers together may have open at once.
pub const LIVE_STREAMS_TOTAL: usize = 64;

/// What kind of footage leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EgressKind {
    /// A time range watched (`view.mp4`).
    Play,
    /// A time range taken away as a file (`view.mp4?download=1`).
    Download,
    /// A camera's live stream (`live.mp4`).
    Live,
}

impl EgressKind {
    /// The audit action of the start entry (and of a denial).
    pub fn action(self) -> &'static str {
        match self {
            EgressKind::Play => "footage.play",
            EgressKind::Download => "footage.download",
            EgressKind::Live => "live.start",
        }
    }

    /// The audit action of the end entry.
    pub fn end_action(self) -> &'static str {
        match self {
            EgressKind::Play => "footage.play.end",
            EgressKind::Download => "footage.download.end",
            EgressKind::Live => "live.stop",
        }
    }
}

/// The audit action of a snapshot (one entry: its bytes are known before it is sent).
pub const SNAPSHOT_ACTION: &str = "live.snapshot";

/// One request for footage, as audited.
#[derive(Clone, Debug)]
pub struct FootageRequest {
    /// `user:<name>` or `token:<name>`.
    pub actor: String,
    pub kind: EgressKind,
    pub camera: String,
    /// The time range asked for (None for live).
    pub range_ns: Option<(i64, i64)>,
    /// The bytes of the view this request gets, first and last inclusive,
    /// and the view's length (None for live).
    pub bytes: Option<(u64, u64, u64)>,
}

impl FootageRequest {
    fn key(&self) -> Key {
        Key {
            actor: self.actor.clone(),
            kind: self.kind,
            camera: self.camera.clone(),
            range_ns: self.range_ns,
        }
    }

    /// The detail of the start entry.
    fn detail(&self) -> String {
        let mut d = match self.range_ns {
            Some((a, b)) => format!("{} to {}", format_ns(a), format_ns(b)),
            None => "live view".to_string(),
        };
        if let Some((first, last, total)) = self.bytes {
            d.push_str(&format!(", bytes {first}-{last} of {total}"));
        }
        d
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    actor: String,
    kind: EgressKind,
    camera: String,
    range_ns: Option<(i64, i64)>,
}

/// Requests for the same footage that share one start entry.
struct Session {
    start_entry: i64,
    requests: u64,
    bytes_sent: u64,
    /// The lowest first byte and highest last byte asked for.
    span: Option<(u64, u64)>,
    total: Option<u64>,
    open: u32,
    last_active: Instant,
    /// Changes each time the session goes idle: a scheduled close applies
    /// only to the idle spell it was scheduled for.
    generation: u64,
}

impl Session {
    fn widen(&mut self, bytes: Option<(u64, u64, u64)>) {
        if let Some((a, b, total)) = bytes {
            self.span = Some(match self.span {
                Some((x, y)) => (x.min(a), y.max(b)),
                None => (a, b),
            });
            self.total = Some(total);
        }
    }
}

/// The audit of footage egress: the sessions open now, and the connection
/// end entries are written on (they are written when a stream ends, outside
/// any request).
pub struct EgressLog {
    db_path: PathBuf,
    window: Duration,
    sessions: Mutex<HashMap<Key, Session>>,
    writer: Mutex<Option<Index>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("the audit log cannot be written, so no footage is served: {0}")]
    Audit(#[from] rusqlite::Error),
}

impl EgressLog {
    /// Entries go to the database at `db_path`; requests within `window`
    /// of each other share entries.
    pub fn new(db_path: PathBuf, window: Duration) -> Self {
        EgressLog {
            db_path,
            window,
            sessions: Mutex::new(HashMap::new()),
            writer: Mutex::new(None),
        }
    }

    /// Joins a session of the same footage that is open or was active
    /// within the window: no entry is written (the session's start entry
    /// covers this request). None when there is none: call [`Self::start`].
    pub fn rejoin(self: &Arc<Self>, req: &FootageRequest) -> Option<EgressTicket> {
        let key = req.key();
        let mut m = self.sessions.lock().ok()?;
        let s = m.get_mut(&key)?;
        if s.open == 0 && s.last_active.elapsed() >= self.window {
            return None;
        }
        s.open += 1;
        s.requests += 1;
        s.widen(req.bytes);
        Some(EgressTicket {
            log: self.clone(),
            key,
            sent: 0,
        })
    }

    /// Writes the start entry of `req` on `conn` and opens its session. An
    /// error means the entry was not written: do not serve the footage.
    pub fn start(self: &Arc<Self>, conn: &Connection, req: &FootageRequest) -> Result<EgressTicket, EgressError> {
        self.close_idle_for(self.window);
        let id = audit::append(
            conn,
            &req.actor,
            req.kind.action(),
            &req.camera,
            Outcome::Ok,
            &req.detail(),
        )?;
        let key = req.key();
        let mut s = Session {
            start_entry: id,
            requests: 1,
            bytes_sent: 0,
            span: None,
            total: None,
            open: 1,
            last_active: Instant::now(),
            generation: 0,
        };
        s.widen(req.bytes);
        // A session this one replaces (two first requests at once) is closed now.
        let replaced = self.sessions.lock().ok().and_then(|mut m| m.insert(key.clone(), s));
        if let Some(old) = replaced {
            self.write_end(&key, &old);
        }
        Ok(EgressTicket {
            log: self.clone(),
            key,
            sent: 0,
        })
    }

    /// A stream of the session ended after handing `sent` bytes to the connection.
    fn finish(self: &Arc<Self>, key: &Key, sent: u64) {
        let generation = {
            let Ok(mut m) = self.sessions.lock() else { return };
            let Some(s) = m.get_mut(key) else { return };
            s.bytes_sent += sent;
            s.open = s.open.saturating_sub(1);
            s.last_active = Instant::now();
            if s.open > 0 {
                return;
            }
            s.generation += 1;
            s.generation
        };
        if self.window.is_zero() {
            return self.close_if_idle(key, generation);
        }
        // Closed when the window has passed (without a runtime: by the next
        // start, or by close_idle).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let log = self.clone();
            let key = key.clone();
            let window = self.window;
            rt.spawn(async move {
                tokio::time::sleep(window).await;
                let _ = tokio::task::spawn_blocking(move || log.close_if_idle(&key, generation)).await;
            });
        }
    }

    /// Writes the end entry of a session still idle since `generation`.
    fn close_if_idle(&self, key: &Key, generation: u64) {
        let session = {
            let Ok(mut m) = self.sessions.lock() else { return };
            match m.get(key) {
                Some(s) if s.open == 0 && s.generation == generation => m.remove(key),
                _ => None,
            }
        };
        if let Some(s) = session {
            self.write_end(key, &s);
        }
    }

    /// Writes every idle session's end entry now (at shutdown, in tests).
    pub fn close_idle(&self) {
        self.close_idle_for(Duration::ZERO);
    }

    /// Writes the end entry of every session idle for `at_least`.
    fn close_idle_for(&self, at_least: Duration) {
        let idle: Vec<(Key, Session)> = match self.sessions.lock() {
            Ok(mut m) => {
                let keys: Vec<Key> = m
                    .iter()
                    .filter(|(_, s)| s.open == 0 && s.last_active.elapsed() >= at_least)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter().filter_map(|k| m.remove(&k).map(|s| (k, s))).collect()
            }
            Err(_) => Vec::new(),
        };
        for (k, s) in idle {
            self.write_end(&k, &s);
        }
    }

    fn write_end(&self, key: &Key, s: &Session) {
        let mut detail = format!(
            "bytes={} in {} request{}",
            s.bytes_sent,
            s.requests,
            if s.requests == 1 { "" } else { "s" }
        );
        if let (Some((a, b)), Some(total)) = (s.span, s.total) {
            detail.push_str(&format!(", within bytes {a}-{b} of {total}"));
        }
        detail.push_str(&format!(", started in entry {}", s.start_entry));
        let Ok(mut w) = self.writer.lock() else { return };
        if w.is_none() {
            match Index::open_existing(&self.db_path) {
                Ok(i) => *w = Some(i),
                Err(e) => {
                    tracing::error!(actor = %key.actor, camera = %key.camera, "cannot audit the end of a footage stream ({detail}): {e}");
                    return;
                }
            }
        }
        if let Some(idx) = w.as_ref() {
            let r = audit::append(
                idx.conn(),
                &key.actor,
                key.kind.end_action(),
                &key.camera,
                Outcome::Ok,
                &detail,
            );
            if let Err(e) = r {
                tracing::error!(actor = %key.actor, camera = %key.camera, "cannot audit the end of a footage stream ({detail}): {e}");
                *w = None;
            }
        }
    }
}

/// One request's share of a session: count what it sends with
/// [`EgressTicket::sent`]; dropping it (the response ended, or the client
/// went away) ends the request.
pub struct EgressTicket {
    log: Arc<EgressLog>,
    key: Key,
    sent: u64,
}

impl EgressTicket {
    /// `n` more bytes were handed to the connection.
    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }
}

impl Drop for EgressTicket {
    fn drop(&mut self) {
        self.log.finish(&self.key, self.sent);
    }
}

/// A snapshot of `camera` (`bytes` long) sent to `actor`: audited before it is sent.
pub fn record_snapshot(conn: &Connection, actor: &str, camera: &str, bytes: u64) -> Result<(), EgressError> {
    audit::append(
        conn,
        actor,
        SNAPSHOT_ACTION,
        camera,
        Outcome::Ok,
        &format!("one key frame, bytes={bytes}"),
    )?;
    Ok(())
}

/// A request for `camera`'s footage or state that `actor` was refused
/// (`action`: the action it asked for, e.g. [`EgressKind::action`]).
pub fn record_denied(conn: &Connection, actor: &str, action: &str, camera: &str, why: &str) -> Result<(), EgressError> {
    audit::append(conn, actor, action, camera, Outcome::Denied, why)?;
    Ok(())
}

/// Caps the streams open at once, per caller and in total: one gate for
/// footage (`view.mp4`), another for live view (`live.mp4`).
pub struct StreamGate {
    per_caller: usize,
    total: usize,
    live: bool,
    open: Mutex<HashMap<String, usize>>,
}

/// Why no stream slot was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamsBusy {
    #[error("too many footage streams open for this caller; close one and try again")]
    Caller,
    #[error("too many footage streams open; try again shortly")]
    Total,
    #[error("too many live streams open for this caller; close one and try again")]
    LiveCaller,
    #[error("too many live streams open; try again shortly")]
    LiveTotal,
}

/// An open stream's slot; dropping it frees the slot.
pub struct StreamSlot {
    gate: Arc<StreamGate>,
    actor: String,
}

impl StreamGate {
    /// The gate of footage streams.
    pub fn new(per_caller: usize, total: usize) -> Self {
        StreamGate {
            per_caller,
            total,
            live: false,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The gate of live streams ([`LIVE_STREAMS_PER_CALLER`], [`LIVE_STREAMS_TOTAL`]).
    pub fn live() -> Self {
        StreamGate {
            live: true,
            ..StreamGate::new(LIVE_STREAMS_PER_CALLER, LIVE_STREAMS_TOTAL)
        }
    }

    /// A slot for one more stream of `actor`.
    pub fn acquire(self: &Arc<Self>, actor: &str) -> Result<StreamSlot, StreamsBusy> {
        let (caller_busy, total_busy) = if self.live {
            (StreamsBusy::LiveCaller, StreamsBusy::LiveTotal)
        } else {
            (StreamsBusy::Caller, StreamsBusy::Total)
        };
        let mut m = self.open.lock().map_err(|_| total_busy.clone())?;
        if m.values().sum::<usize>() >= self.total {
            return Err(total_busy);
        }
        let n = m.entry(actor.to_string()).or_insert(0);
        if *n >= self.per_caller {
            return Err(caller_busy);
        }
        *n += 1;
        Ok(StreamSlot {
            gate: self.clone(),
            actor: actor.to_string(),
        })
    }
}

impl Default for StreamGate {
    fn default() -> Self {
        StreamGate::new(STREAMS_PER_CALLER, STREAMS_TOTAL)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.gate.open.lock() {
            if let Some(n) = m.get_mut(&self.actor) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.actor);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.db");
        Index::open(&p).unwrap();
        (d, p)
    }

    fn entries(p: &std::path::Path) -> Vec<audit::Entry> {
        audit::tail(Index::open_existing(p).unwrap().conn(), 100).unwrap()
    }

    fn download(actor: &str, first: u64, last: u64) -> FootageRequest {
        FootageRequest {
            actor: actor.into(),
            kind: EgressKind::Download,
            camera: "cam".into(),
            range_ns: Some((1_700_000_000_000_000_000, 1_700_000_060_000_000_000)),
            bytes: Some((first, last, 1000)),
        }
    }

    #[test]
    fn a_range_download_is_audited_before_and_after_with_its_bytes() {
        let (_d, p) = db();
        let log = Arc::new(EgressLog::new(p.clone(), Duration::ZERO));
        let idx = Index::open_existing(&p).unwrap();
        let mut t = log.start(idx.conn(), &download("token:op", 0, 999)).unwrap();
        let e = entries(&p);
        assert_eq!(e.len(), 1, "audited before the first byte");
        assert_eq!(
            (e[0].actor.as_str(), e[0].action.as_str(), e[0].target.as_str()),
            ("token:op", "footage.download", "cam")
        );
        assert!(e[0].detail.contains("bytes 0-999 of 1000"), "{}", e[0].detail);
        assert!(e[0].detail.contains("2023-11-14"), "{}", e[0].detail);
        t.sent(640);
        drop(t); // the client went away after 640 bytes
        let e = entries(&p);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].action, "footage.download.end");
        assert!(e[1].detail.starts_with("bytes=640 in 1 request"), "{}", e[1].detail);
        assert!(e[1].detail.contains(&format!("entry {}", e[0].id)), "{}", e[1].detail);
    }

    #[test]
    fn repeated_range_requests_share_one_pair_of_entries_but_count_every_byte() {
        let (_d, p) = db();
        let log = Arc::new(EgressLog::new(p.clone(), Duration::from_secs(3600)));
        let idx = Index::open_existing(&p).unwrap();
        let first = log.start(idx.conn(), &download("user:v", 0, 0)).unwrap();
        drop(first);
        for i in 1..50u64 {
            let req = download("user:v", i, i);
            let mut t = log.rejoin(&req).expect("joins the recent session");
            t.sent(1);
        }
        // Another caller, or another kind, is never folded in.
        assert!(log.rejoin(&download("user:w", 0, 0)).is_none());
        let mut play = download("user:v", 0, 0);
        play.kind = EgressKind::Play;
        assert!(log.rejoin(&play).is_none());
        assert_eq!(entries(&p).len(), 1, "one start entry for 50 requests");
        log.close_idle();
        let e = entries(&p);
        assert_eq!(e.len(), 2);
        assert!(
            e[1].detail
                .starts_with("bytes=49 in 50 requests, within bytes 0-49 of 1000"),
            "{}",
            e[1].detail
        );
    }

    #[test]
    fn a_session_idle_past_the_window_is_not_joined() {
        let (_d, p) = db();
        let log = Arc::new(EgressLog::new(p.clone(), Duration::ZERO));
        let idx = Index::open_existing(&p).unwrap();
        drop(log.start(idx.conn(), &download("user:v", 0, 9)).unwrap());
        assert!(log.rejoin(&download("user:v", 0, 9)).is_none());
        drop(log.start(idx.conn(), &download("user:v", 0, 9)).unwrap());
        let actions: Vec<String> = entries(&p).into_iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                "footage.download",
                "footage.download.end",
                "footage.download",
                "footage.download.end"
            ]
        );
    }

    #[test]
    fn no_audit_no_footage() {
        let (_d, p) = db();
        let log = Arc::new(EgressLog::new(p.clone(), Duration::ZERO));
        let idx = Index::open_existing(&p).unwrap();
        idx.conn().execute_batch("DROP TABLE audit_log").unwrap();
        assert!(log.start(idx.conn(), &download("user:v", 0, 9)).is_err());
    }

    #[test]
    fn denials_and_snapshots_are_audited() {
        let (_d, p) = db();
        let idx = Index::open_existing(&p).unwrap();
        record_denied(
            idx.conn(),
            "user:v",
            "footage.play",
            "back",
            "not in the caller's camera set",
        )
        .unwrap();
        record_snapshot(idx.conn(), "user:v", "cam", 1234).unwrap();
        let e = entries(&p);
        assert_eq!(
            (e[0].action.as_str(), e[0].outcome.as_str()),
            ("footage.play", "denied")
        );
        assert_eq!(
            (e[1].action.as_str(), e[1].detail.as_str()),
            ("live.snapshot", "one key frame, bytes=1234")
        );
    }

    #[test]
    fn streams_are_capped_per_caller_and_in_total() {
        let gate = Arc::new(StreamGate::new(4, 6));
        let a: Vec<StreamSlot> = (0..4).map(|_| gate.acquire("user:a").unwrap()).collect();
        assert_eq!(gate.acquire("user:a").err(), Some(StreamsBusy::Caller));
        let b: Vec<StreamSlot> = (0..2).map(|_| gate.acquire("user:b").unwrap()).collect();
        assert_eq!(gate.acquire("user:c").err(), Some(StreamsBusy::Total));
        drop(a);
        assert!(gate.acquire("user:a").is_ok());
        drop(b);
        assert!(gate.open.lock().unwrap().is_empty(), "slots are freed");
    }

    #[test]
    fn live_streams_have_their_own_larger_budget() {
        let footage = Arc::new(StreamGate::default());
        let live = Arc::new(StreamGate::live());
        let f: Vec<StreamSlot> = (0..STREAMS_PER_CALLER)
            .map(|_| footage.acquire("user #1").unwrap())
            .collect();
        assert_eq!(footage.acquire("user #1").err(), Some(StreamsBusy::Caller));
        // A full footage allowance leaves the live grid untouched.
        let l: Vec<StreamSlot> = (0..16).map(|_| live.acquire("user #1").unwrap()).collect();
        assert_eq!(live.acquire("user #1").err(), Some(StreamsBusy::LiveCaller));
        let others: Vec<StreamSlot> = (2..=4)
            .flat_map(|u| (0..16).map(move |_| u))
            .map(|u| live.acquire(&format!("user #{u}")).unwrap())
            .collect();
        assert_eq!(live.acquire("user #5").err(), Some(StreamsBusy::LiveTotal));
        assert_eq!(l.len() + others.len(), LIVE_STREAMS_TOTAL);
        drop(f);
        assert!(footage.acquire("user #1").is_ok(), "footage slots are not live slots");
        drop(l);
        assert!(live.acquire("user #5").is_ok());
    }
}
