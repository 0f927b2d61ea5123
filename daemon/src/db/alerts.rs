//! Alerts: what is wrong with the box (or was, for a moment), as rows that
//! are written in the same transaction as the state change that raised
//! them, together with their outbox messages (`alert_event`). The
//! dispatcher (`alerts::dispatch`) fans each message out to the channels
//! and records the deliveries ([`super::alert_outbox`]).
//!
//! An alert is identified while open by its kind and subject (a camera, a
//! user, a client network, a secret, or "" for the box): raising it again
//! refreshes it, clearing it queues a "resolved" message. A raise may carry
//! a delay (a camera offline for N seconds): cleared before then, it sends
//! nothing at all. Instant kinds (a fixity mismatch, a lockout) are opened
//! and closed at once and send one message.

use rusqlite::{params, Connection, OptionalExtension};

/// Every kind of alert, with its stable code and severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CameraOffline,
    RecordingGap,
    DiskLow,
    StoragePaused,
    StorageWriteFailed,
    FixityMismatch,
    RecordingTampered,
    AuditTampered,
    ClockUnsynchronised,
    CameraClockDrift,
    LoginLockout,
    LoginFailures,
    KeysUnsealFailed,
    SecretExpiring,
    SecretExpired,
    ReplicationLagging,
    DaemonRestarted,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::CameraOffline,
        Kind::RecordingGap,
        Kind::DiskLow,
        Kind::StoragePaused,
        Kind::StorageWriteFailed,
        Kind::FixityMismatch,
        Kind::RecordingTampered,
        Kind::AuditTampered,
        Kind::ClockUnsynchronised,
        Kind::CameraClockDrift,
        Kind::LoginLockout,
        Kind::LoginFailures,
        Kind::KeysUnsealFailed,
        Kind::SecretExpiring,
        Kind::SecretExpired,
        Kind::ReplicationLagging,
        Kind::DaemonRestarted,
    ];

    /// The stable code receivers match on.
    pub fn code(self) -> &'static str {
        match self {
            Kind::CameraOffline => "camera.offline",
            Kind::RecordingGap => "recording.gap",
            Kind::DiskLow => "disk.low",
            Kind::StoragePaused => "storage.paused",
            Kind::StorageWriteFailed => "storage.write_failed",
            Kind::FixityMismatch => "fixity.mismatch",
            Kind::RecordingTampered => "recording.tampered",
            Kind::AuditTampered => "audit.tampered",
            Kind::ClockUnsynchronised => "clock.unsynchronised",
            Kind::CameraClockDrift => "camera.clock_drift",
            Kind::LoginLockout => "login.lockout",
            Kind::LoginFailures => "login.failures",
            Kind::KeysUnsealFailed => "keys.unseal_failed",
            Kind::SecretExpiring => "secret.expiring",
            Kind::SecretExpired => "secret.expired",
            Kind::ReplicationLagging => "replication.lagging",
            Kind::DaemonRestarted => "daemon.restarted",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Kind::CameraOffline
            | Kind::StoragePaused
            | Kind::StorageWriteFailed
            | Kind::FixityMismatch
            | Kind::RecordingTampered
            | Kind::AuditTampered
            | Kind::KeysUnsealFailed
            | Kind::SecretExpired => "critical",
            _ => "warning",
        }
    }

    /// Opened and closed at once: one message, no "resolved".
    pub fn instant(self) -> bool {
        matches!(
            self,
            Kind::RecordingGap
                | Kind::FixityMismatch
                | Kind::RecordingTampered
                | Kind::LoginLockout
                | Kind::LoginFailures
                | Kind::DaemonRestarted
        )
    }

    pub fn of_code(code: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One alert as raised.
#[derive(Clone, Debug)]
pub struct Raise<'a> {
    pub kind: Kind,
    /// What it is about: a camera's name, a user, a network, a secret; "" for the box.
    pub subject: &'a str,
    /// The camera, where it applies.
    pub camera: Option<&'a str>,
    /// The human sentence.
    pub message: &'a str,
    /// Not sent before this long (ns) after it was raised; cleared sooner, never sent.
    pub delay_ns: i64,
}

impl<'a> Raise<'a> {
    pub fn new(kind: Kind, subject: &'a str, message: &'a str) -> Raise<'a> {
        Raise {
            kind,
            subject,
            camera: None,
            message,
            delay_ns: 0,
        }
    }

    /// About camera `name` (its subject too).
    pub fn camera(kind: Kind, name: &'a str, message: &'a str) -> Raise<'a> {
        Raise {
            kind,
            subject: name,
            camera: Some(name),
            message,
            delay_ns: 0,
        }
    }

    pub fn after(mut self, delay_ns: i64) -> Raise<'a> {
        self.delay_ns = delay_ns.max(0);
        self
    }
}

/// An alert row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    pub code: String,
    pub severity: String,
    pub subject: String,
    pub camera: Option<String>,
    pub message: String,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// None while open.
    pub cleared_ns: Option<i64>,
    pub occurrences: i64,
    /// Cleared before its delay was up: nothing was sent.
    pub silent: bool,
}

/// An alert's columns, `{a}` standing for a table prefix ("" or "a.").
pub(crate) const ALERT_SELECT: &str = "{a}id, {a}code, {a}severity, {a}subject, {a}camera, {a}message, \
     {a}first_seen_ns, {a}last_seen_ns, {a}cleared_ns, {a}occurrences, {a}silent";
/// How many columns [`ALERT_SELECT`] has.
pub(crate) const ALERT_FIELDS: usize = 11;

fn alert_columns() -> String {
    ALERT_SELECT.replace("{a}", "")
}

fn alert_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    alert_from_row_at(r, 0)
}

/// An alert read from [`ALERT_SELECT`]'s columns starting at column `n`.
pub(crate) fn alert_from_row_at(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(n)?,
        code: r.get(n + 1)?,
        severity: r.get(n + 2)?,
        subject: r.get(n + 3)?,
        camera: r.get(n + 4)?,
        message: r.get(n + 5)?,
        first_seen_ns: r.get(n + 6)?,
        last_seen_ns: r.get(n + 7)?,
        cleared_ns: r.get(n + 8)?,
        occurrences: r.get(n + 9)?,
        silent: r.get::<_, i64>(n + 10)? != 0,
    })
}

/// Queues one outbox message for alert `alert_id`.
fn queue(conn: &Connection, alert_id: i64, kind: &str, at_ns: i64, not_before_ns: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO alert_event (alert_id, kind, at_ns, not_before_ns, idempotency_key, state) \
         VALUES (?1, ?2, ?3, ?4, 'vigil-' || lower(hex(randomblob(10))), 'pending')",
    )?
    .execute(params![alert_id, kind, at_ns, not_before_ns])?;
    Ok(conn.last_insert_rowid())
}

/// The longest message kept (an SMS carries about 300 characters); a
/// message is stored one line ([`crate::base::text::one_line`]): a camera's
/// error text could carry control characters.
const MAX_MESSAGE: usize = 600;

/// Raises `r` at `now_ns`: opens the alert and queues its "raised" message
/// (or, while it is open, refreshes its message and last-seen time and
/// counts the occurrence). Instant kinds are opened and closed at once.
/// Returns the alert's id. Call it inside the transaction of the state
/// change that raised it.
pub fn raise(conn: &Connection, r: &Raise<'_>, now_ns: i64) -> rusqlite::Result<i64> {
    let message = crate::base::text::one_line(r.message, MAX_MESSAGE);
    let message = message.as_str();
    let open: Option<i64> = if r.kind.instant() {
        None
    } else {
        conn.prepare_cached("SELECT id FROM alert WHERE code = ?1 AND subject = ?2 AND cleared_ns IS NULL")?
            .query_row(params![r.kind.code(), r.subject], |row| row.get(0))
            .optional()?
    };
    if let Some(id) = open {
        conn.prepare_cached(
            "UPDATE alert SET message = ?2, last_seen_ns = ?3, occurrences = occurrences + 1 WHERE id = ?1",
        )?
        .execute(params![id, message, now_ns])?;
        return Ok(id);
    }
    conn.prepare_cached(
        "INSERT INTO alert (code, severity, subject, camera, message, first_seen_ns, last_seen_ns, cleared_ns, occurrences, silent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, 1, 0)",
    )?
    .execute(params![
        r.kind.code(),
        r.kind.severity(),
        r.subject,
        r.camera,
        message,
        now_ns,
        r.kind.instant().then_some(now_ns)
    ])?;
    let id = conn.last_insert_rowid();
    queue(conn, id, "raised", now_ns, now_ns + r.delay_ns)?;
    Ok(id)
}

/// Clears the open alert of `kind` about `subject`, if any: queues its
/// "resolved" message, or, when its "raised" message is still waiting out
/// its delay, withdraws that and sends nothing. Returns whether one was open.
pub fn clear(conn: &Connection, kind: Kind, subject: &str, now_ns: i64) -> rusqlite::Result<bool> {
    let open: Option<i64> = conn
        .prepare_cached("SELECT id FROM alert WHERE code = ?1 AND subject = ?2 AND cleared_ns IS NULL")?
        .query_row(params![kind.code(), subject], |row| row.get(0))
        .optional()?;
    let Some(id) = open else { return Ok(false) };
    let withdrawn = conn
        .prepare_cached(
            "UPDATE alert_event SET state = 'cancelled' \
             WHERE alert_id = ?1 AND kind = 'raised' AND state = 'pending' AND not_before_ns > ?2",
        )?
        .execute(params![id, now_ns])?;
    conn.prepare_cached("UPDATE alert SET cleared_ns = ?2, silent = ?3 WHERE id = ?1")?
        .execute(params![id, now_ns, i64::from(withdrawn > 0)])?;
    if withdrawn == 0 {
        queue(conn, id, "resolved", now_ns, now_ns)?;
    }
    Ok(true)
}

/// Raises or clears in one call: `problem` Some raises it with that
/// message, None clears it.
pub fn set(conn: &Connection, kind: Kind, subject: &str, problem: Option<&str>, now_ns: i64) -> rusqlite::Result<()> {
    match problem {
        Some(m) => raise(conn, &Raise::new(kind, subject, m), now_ns).map(|_| ()),
        None => clear(conn, kind, subject, now_ns).map(|_| ()),
    }
}

/// In its own IMMEDIATE transaction: for callers whose state change is the
/// alert itself (a polled condition).
pub fn set_now(
    conn: &Connection,
    kind: Kind,
    subject: &str,
    problem: Option<&str>,
    now_ns: i64,
) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    set(&tx, kind, subject, problem, now_ns)?;
    tx.commit()
}

/// [`raise`] in its own IMMEDIATE transaction.
pub fn raise_now(conn: &Connection, r: &Raise<'_>, now_ns: i64) -> rusqlite::Result<i64> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let id = raise(&tx, r, now_ns)?;
    tx.commit()?;
    Ok(id)
}

/// The open alerts (nothing silent), most severe and newest first.
pub fn open(conn: &Connection) -> rusqlite::Result<Vec<Alert>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {} FROM alert WHERE cleared_ns IS NULL \
         ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, first_seen_ns DESC",
        alert_columns()
    ))?;
    let rows = st.query_map([], alert_from_row)?;
    rows.collect()
}

/// The latest `limit` alerts that were sent or are still open (closed
/// silent ones are left out), newest first.
pub fn recent(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Alert>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {} FROM alert WHERE silent = 0 ORDER BY id DESC LIMIT ?1",
        alert_columns()
    ))?;
    let rows = st.query_map([limit as i64], alert_from_row)?;
    rows.collect()
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Alert>> {
    conn.prepare_cached(&format!("SELECT {} FROM alert WHERE id = ?1", alert_columns()))?
        .query_row([id], alert_from_row)
        .optional()
}

/// How many alerts of `kind` about `subject` were raised since `since_ns`
/// (flap damping counts them).
pub fn raised_since(conn: &Connection, code: &str, subject: &str, since_ns: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM alert WHERE code = ?1 AND subject = ?2 AND first_seen_ns >= ?3")?
        .query_row(params![code, subject, since_ns], |r| r.get(0))
}

/// Clears the open camera alerts (offline, write failure, clock drift) of
/// cameras that have been stopped (removed, disabled) since before
/// `stopped_before_ns`: nobody runs them any more.
pub fn clear_stopped_cameras(conn: &Connection, stopped_before_ns: i64, now_ns: i64) -> rusqlite::Result<usize> {
    let stale: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT a.code, a.subject FROM alert a JOIN camera c ON c.name = a.camera \
             WHERE a.cleared_ns IS NULL AND a.code IN ('camera.offline', 'storage.write_failed', 'camera.clock_drift') \
             AND c.state = 'stopped' AND c.state_since_ns < ?1",
        )?
        .query_map([stopped_before_ns], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (code, subject) in &stale {
        if let Some(kind) = Kind::of_code(code) {
            clear(conn, kind, subject, now_ns)?;
        }
    }
    Ok(stale.len())
}

/// At daemon start: camera.offline alerts still waiting out their delay
/// from the last run are withdrawn (closed, silent): each camera raises
/// afresh, with a fresh delay, if it does not stream now. A long stop (or
/// a clock stepped at boot) then never pages for cameras that reconnect.
pub fn withdraw_waiting_camera_raises(conn: &Connection, now_ns: i64) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT a.id FROM alert a JOIN alert_event e ON e.alert_id = a.id \
             WHERE a.code = 'camera.offline' AND a.cleared_ns IS NULL AND e.kind = 'raised' AND e.state = 'pending'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        conn.execute(
            "UPDATE alert_event SET state = 'cancelled' WHERE alert_id = ?1 AND kind = 'raised' AND state = 'pending'",
            [id],
        )?;
        conn.execute(
            "UPDATE alert SET cleared_ns = ?2, silent = 1 WHERE id = ?1",
            params![id, now_ns],
        )?;
    }
    Ok(ids.len())
}

/// Open alerts per severity, for /metrics.
pub fn open_by_severity(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st =
        conn.prepare_cached("SELECT severity, COUNT(*) FROM alert WHERE cleared_ns IS NULL GROUP BY severity")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Remembers that the daemon is running (cleared by a clean stop) and
/// returns whether the previous run ended without one, with how systemd
/// said it ended (`vigil note-stop` in ExecStopPost), if it did.
pub fn mark_running(conn: &Connection, now_ns: i64) -> rusqlite::Result<Option<Option<String>>> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let prev: Option<(i64, Option<String>)> = tx
        .query_row("SELECT running, stop_result FROM daemon_run WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    tx.execute(
        "INSERT INTO daemon_run (id, running, started_ns, stop_result) VALUES (1, 1, ?1, NULL) \
         ON CONFLICT (id) DO UPDATE SET running = 1, started_ns = ?1, stop_result = NULL",
        [now_ns],
    )?;
    tx.commit()?;
    Ok(match prev {
        Some((1, result)) => Some(result),
        Some((_, Some(result))) if result != "success" => Some(Some(result)),
        _ => None,
    })
}

/// A clean stop: the next start raises nothing.
pub fn mark_stopped(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("UPDATE daemon_run SET running = 0, stop_result = NULL WHERE id = 1", [])?;
    Ok(())
}

/// How systemd says the service ended (`$SERVICE_RESULT`, `$EXIT_CODE`,
/// `$EXIT_STATUS` in ExecStopPost), kept for the next start unless the stop
/// was clean.
pub fn note_stop_result(conn: &Connection, result: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO daemon_run (id, running, started_ns, stop_result) VALUES (1, 0, 0, ?1) \
         ON CONFLICT (id) DO UPDATE SET stop_result = ?1",
        [result],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Index) {
        let d = tempfile::tempdir().unwrap();
        let idx = crate::db::Index::open(&d.path().join("i.db")).unwrap();
        (d, idx)
    }

    fn events(conn: &Connection) -> Vec<(i64, String, String)> {
        let mut st = conn
            .prepare("SELECT alert_id, kind, state FROM alert_event ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn raise_refreshes_while_open_and_clear_resolves() {
        let (_d, idx) = db();
        let c = idx.conn();
        let r = Raise::camera(Kind::CameraOffline, "front", "Camera front is offline");
        let a = raise(c, &r, 100).unwrap();
        assert_eq!(raise(c, &r, 200).unwrap(), a, "still open: the same alert");
        assert_eq!(get(c, a).unwrap().unwrap().occurrences, 2);
        assert!(clear(c, Kind::CameraOffline, "front", 300).unwrap());
        assert!(!clear(c, Kind::CameraOffline, "front", 301).unwrap(), "nothing open");
        assert_eq!(
            events(c),
            vec![
                (a, "raised".into(), "pending".into()),
                (a, "resolved".into(), "pending".into())
            ]
        );
        assert!(open(c).unwrap().is_empty());
        let b = raise(c, &r, 400).unwrap();
        assert_ne!(a, b, "raised again after clearing: a new alert");
    }

    #[test]
    fn cleared_within_the_delay_sends_nothing() {
        let (_d, idx) = db();
        let c = idx.conn();
        let a = raise(
            c,
            &Raise::camera(Kind::CameraOffline, "yard", "offline").after(5_000),
            1_000,
        )
        .unwrap();
        clear(c, Kind::CameraOffline, "yard", 3_000).unwrap();
        assert_eq!(events(c), vec![(a, "raised".into(), "cancelled".into())]);
        assert!(get(c, a).unwrap().unwrap().silent);
        assert!(recent(c, 10).unwrap().is_empty(), "a blip is not listed");
        // Cleared after the delay: resolved.
        let b = raise(
            c,
            &Raise::camera(Kind::CameraOffline, "yard", "offline").after(5_000),
            10_000,
        )
        .unwrap();
        clear(c, Kind::CameraOffline, "yard", 16_000).unwrap();
        assert_eq!(
            events(c)[1..],
            [
                (b, "raised".into(), "pending".into()),
                (b, "resolved".into(), "pending".into())
            ]
        );
    }

    #[test]
    fn instant_kinds_are_closed_at_once_and_each_counts() {
        let (_d, idx) = db();
        let c = idx.conn();
        let r = Raise::camera(Kind::FixityMismatch, "front", "recording 3 changed");
        let a = raise(c, &r, 1).unwrap();
        let b = raise(c, &r, 2).unwrap();
        assert_ne!(a, b);
        assert!(open(c).unwrap().is_empty());
        assert_eq!(raised_since(c, "fixity.mismatch", "front", 0).unwrap(), 2);
        assert_eq!(events(c).len(), 2);
        let keys: Vec<String> = c
            .prepare("SELECT idempotency_key FROM alert_event")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(keys[0].starts_with("vigil-") && keys[0].len() == 26 && keys[0] != keys[1]);
    }

    #[test]
    fn a_restart_withdraws_waiting_camera_raises_and_messages_are_cleaned() {
        let (_d, idx) = db();
        let c = idx.conn();
        let r = Raise::camera(Kind::CameraOffline, "door", "offline\n\u{1b}[31mred").after(60_000);
        let a = raise(c, &r, 1_000).unwrap();
        assert_eq!(
            get(c, a).unwrap().unwrap().message,
            "offline  [31mred",
            "control characters replaced"
        );
        let long = "x".repeat(5000);
        let b = raise(c, &Raise::new(Kind::DiskLow, "", &long), 1_000).unwrap();
        assert_eq!(get(c, b).unwrap().unwrap().message.chars().count(), MAX_MESSAGE + 1);
        assert_eq!(withdraw_waiting_camera_raises(c, 2_000).unwrap(), 1);
        let got = get(c, a).unwrap().unwrap();
        assert!(got.silent && got.cleared_ns == Some(2_000));
        assert_eq!(events(c)[0], (a, "raised".into(), "cancelled".into()));
        assert_eq!(open(c).unwrap().len(), 1, "only disk.low stays open");
    }

    #[test]
    fn an_unclean_stop_is_noticed_once() {
        let (_d, idx) = db();
        let c = idx.conn();
        assert_eq!(mark_running(c, 1).unwrap(), None, "first start");
        assert_eq!(mark_running(c, 2).unwrap(), Some(None), "killed: still marked running");
        note_stop_result(c, "watchdog").unwrap();
        assert_eq!(mark_running(c, 3).unwrap(), Some(Some("watchdog".into())));
        mark_stopped(c).unwrap();
        assert_eq!(mark_running(c, 4).unwrap(), None, "clean stop");
        mark_stopped(c).unwrap();
        note_stop_result(c, "success").unwrap();
        // ExecStopPost runs after a clean stop too: "success" is no failure.
        assert_eq!(mark_running(c, 5).unwrap(), None);
        mark_stopped(c).unwrap();
        note_stop_result(c, "exit-code").unwrap();
        assert_eq!(mark_running(c, 6).unwrap(), Some(Some("exit-code".into())));
    }
}
