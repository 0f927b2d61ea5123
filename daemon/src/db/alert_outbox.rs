//! The alert outbox's delivery side: the dispatcher (`alerts::dispatch`)
//! fans each due event out to the channels it concerns (one
//! `alert_delivery` row per channel), then sends, retries, holds back (rate
//! limit, flap damping) and folds held messages into digests, recording
//! every step here so that a restart, a `kill -9` or a network outage loses
//! nothing and never resends a message under a new key. Also the
//! channels added from the web UI.

use rusqlite::{params, Connection, OptionalExtension};

use super::alerts::{Alert, ALERT_SELECT};

/// An outbox event with its alert.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: i64,
    /// "raised" or "resolved".
    pub kind: String,
    pub at_ns: i64,
    pub idempotency_key: String,
    pub alert: Alert,
}

/// One event's delivery through one channel.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub event: Event,
    pub channel: String,
    /// pending | held | digesting | sent | failed
    pub state: String,
    pub attempts: i64,
    pub queued_ns: i64,
    pub digest_key: Option<String>,
    pub last_error: Option<String>,
    pub sent_ns: Option<i64>,
}

fn event_select() -> String {
    format!(
        "SELECT e.id, e.kind, e.at_ns, e.idempotency_key, {} FROM alert_event e JOIN alert a ON a.id = e.alert_id",
        ALERT_SELECT.replace("{a}", "a.")
    )
}

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        kind: r.get(1)?,
        at_ns: r.get(2)?,
        idempotency_key: r.get(3)?,
        alert: super::alerts::alert_from_row_at(r, 4)?,
    })
}

/// Events whose time has come and that no channel has been given yet, oldest first.
pub fn due_events(conn: &Connection, now_ns: i64, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut st = conn.prepare_cached(&format!(
        "{} WHERE e.state = 'pending' AND e.not_before_ns <= ?1 ORDER BY e.id LIMIT ?2",
        event_select()
    ))?;
    let rows = st.query_map(params![now_ns, limit as i64], event_from_row)?;
    rows.collect()
}

/// Gives event `id` to `channels` (name, held back for flapping) in one
/// transaction; with no channel at all, the event is done.
pub fn fan_out(conn: &Connection, id: i64, channels: &[(String, bool)], now_ns: i64) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    // Still pending under the write lock: a clear() that withdrew the
    // message after it was read as due wins, and nothing is handed out.
    let taken = tx
        .prepare_cached("UPDATE alert_event SET state = 'fanned' WHERE id = ?1 AND state = 'pending'")?
        .execute([id])?;
    if taken == 0 {
        return tx.commit();
    }
    for (ch, damped) in channels {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO alert_delivery (event_id, channel, state, next_attempt_ns, queued_ns, damped) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        )?
        .execute(params![
            id,
            ch,
            if *damped { "held" } else { "pending" },
            now_ns,
            i64::from(*damped)
        ])?;
    }
    tx.commit()
}

fn delivery_select() -> String {
    format!(
        "SELECT e.id, e.kind, e.at_ns, e.idempotency_key, {}, d.channel, d.state, d.attempts, d.queued_ns, \
         d.digest_key, d.last_error, d.sent_ns \
         FROM alert_delivery d JOIN alert_event e ON e.id = d.event_id JOIN alert a ON a.id = e.alert_id",
        ALERT_SELECT.replace("{a}", "a.")
    )
}

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let event = event_from_row(r)?;
    let n = 4 + super::alerts::ALERT_FIELDS;
    Ok(Delivery {
        event,
        channel: r.get(n)?,
        state: r.get(n + 1)?,
        attempts: r.get(n + 2)?,
        queued_ns: r.get(n + 3)?,
        digest_key: r.get(n + 4)?,
        last_error: r.get(n + 5)?,
        sent_ns: r.get(n + 6)?,
    })
}

/// A channel's deliveries in `state` (all of them, or only those due by
/// `due_by_ns`), oldest first, at most `limit`.
pub fn deliveries(
    conn: &Connection,
    channel: &str,
    state: &str,
    due_by_ns: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut st = conn.prepare_cached(&format!(
        "{} WHERE d.channel = ?1 AND d.state = ?2 AND (?3 IS NULL OR d.next_attempt_ns <= ?3) \
         ORDER BY d.event_id LIMIT ?4",
        delivery_select()
    ))?;
    let rows = st.query_map(params![channel, state, due_by_ns, limit as i64], delivery_from_row)?;
    rows.collect()
}

/// The deliveries of the alerts `ids` (for listings).
pub fn deliveries_of_alert(conn: &Connection, alert_id: i64) -> rusqlite::Result<Vec<Delivery>> {
    let mut st = conn.prepare_cached(&format!(
        "{} WHERE a.id = ?1 ORDER BY d.event_id, d.channel",
        delivery_select()
    ))?;
    let rows = st.query_map([alert_id], delivery_from_row)?;
    rows.collect()
}

/// Individual messages (digests aside) a channel sent since `since_ns`: the rate limit's count.
pub fn sent_since(conn: &Connection, channel: &str, since_ns: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM alert_delivery WHERE channel = ?1 AND state = 'sent' AND digest_key IS NULL AND sent_ns >= ?2",
    )?
    .query_row(params![channel, since_ns], |r| r.get(0))
}

/// The last time a channel sent a digest (its newest sent_ns), if ever.
pub fn last_digest_ns(conn: &Connection, channel: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MAX(sent_ns) FROM alert_delivery WHERE channel = ?1 AND state = 'sent' AND digest_key IS NOT NULL",
    )?
    .query_row([channel], |r| r.get(0))
}

/// What a delivery step applies to: one event's delivery, or every
/// delivery of a digest.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Event(i64),
    Digest(&'a str),
}

impl Target<'_> {
    /// The WHERE clause (with ?1 = channel, ?2 = the event id or digest key).
    fn filter(self) -> &'static str {
        match self {
            Target::Event(_) => "channel = ?1 AND event_id = ?2",
            Target::Digest(_) => "channel = ?1 AND digest_key = ?2",
        }
    }

    fn key(self) -> rusqlite::types::Value {
        match self {
            Target::Event(id) => rusqlite::types::Value::Integer(id),
            Target::Digest(k) => rusqlite::types::Value::Text(k.to_string()),
        }
    }
}

/// Delivered: one event, or every delivery of a digest.
pub fn mark_sent(conn: &Connection, channel: &str, t: Target<'_>, now_ns: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "UPDATE alert_delivery SET state = 'sent', sent_ns = ?3, attempts = attempts + 1, last_error = NULL \
         WHERE {}",
        t.filter()
    ))?
    .execute(params![channel, t.key(), now_ns])?;
    Ok(())
}

/// A failed attempt: tried again at `next_ns`, or given up (`failed`) when `give_up`.
pub fn mark_retry(
    conn: &Connection,
    channel: &str,
    t: Target<'_>,
    next_ns: i64,
    error: &str,
    give_up: bool,
) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "UPDATE alert_delivery SET attempts = attempts + 1, next_attempt_ns = ?3, last_error = ?4, \
         state = CASE WHEN ?5 THEN 'failed' ELSE state END WHERE {}",
        t.filter()
    ))?
    .execute(params![channel, t.key(), next_ns, error, give_up])?;
    Ok(())
}

/// Held back (rate limit) until a digest carries it.
pub fn mark_held(conn: &Connection, event_id: i64, channel: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE alert_delivery SET state = 'held' WHERE event_id = ?1 AND channel = ?2")?
        .execute(params![event_id, channel])?;
    Ok(())
}

/// Puts deliveries `event_ids` of `channel` into the digest `key` (in one
/// transaction, before it is sent: a retry after a crash sends the same
/// digest under the same key).
pub fn assign_digest(
    conn: &Connection,
    channel: &str,
    event_ids: &[i64],
    key: &str,
    now_ns: i64,
) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    for id in event_ids {
        tx.prepare_cached(
            "UPDATE alert_delivery SET state = 'digesting', digest_key = ?3, next_attempt_ns = ?4 \
             WHERE event_id = ?1 AND channel = ?2 AND state IN ('pending', 'held')",
        )?
        .execute(params![id, channel, key, now_ns])?;
    }
    tx.commit()
}

/// Whether a digest of `channel` is assigned and not yet delivered.
pub fn digest_waiting(conn: &Connection, channel: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM alert_delivery WHERE channel = ?1 AND state = 'digesting')")?
        .query_row([channel], |r| r.get(0))
}

/// The undelivered messages of channels that are gone (removed from
/// vigil.toml or the UI) are given up, with that reason; returns how many.
pub fn give_up_removed_channels(conn: &Connection, channels: &[String], now_ns: i64) -> rusqlite::Result<usize> {
    let orphans: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT channel FROM alert_delivery WHERE state IN ('pending', 'held', 'digesting')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?
        .into_iter()
        .filter(|c| !channels.contains(c))
        .collect();
    let mut n = 0;
    for c in orphans {
        n += conn
            .prepare_cached(
                "UPDATE alert_delivery SET state = 'failed', last_error = 'the channel was removed', next_attempt_ns = ?2 \
                 WHERE channel = ?1 AND state IN ('pending', 'held', 'digesting')",
            )?
            .execute(params![c, now_ns])?;
    }
    Ok(n)
}

/// At start: whatever waits is tried at once (a restart is a good moment).
pub fn retry_all_now(conn: &Connection, now_ns: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE alert_delivery SET next_attempt_ns = ?1 WHERE state IN ('pending', 'digesting') AND next_attempt_ns > ?1",
        [now_ns],
    )
}

/// One channel's delivery figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub channel: String,
    pub sent: i64,
    pub pending: i64,
    pub held: i64,
    pub failed: i64,
    pub oldest_pending_ns: Option<i64>,
    pub last_sent_ns: Option<i64>,
    pub last_error: Option<String>,
}

/// Figures for every channel that has deliveries.
pub fn channel_stats(conn: &Connection) -> rusqlite::Result<Vec<ChannelStats>> {
    let mut st = conn.prepare_cached(
        "SELECT channel, \
           SUM(state = 'sent'), SUM(state IN ('pending', 'digesting')), SUM(state = 'held'), SUM(state = 'failed'), \
           MIN(CASE WHEN state IN ('pending', 'digesting', 'held') THEN queued_ns END), MAX(sent_ns) \
         FROM alert_delivery GROUP BY channel ORDER BY channel",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ChannelStats {
            channel: r.get(0)?,
            sent: r.get(1)?,
            pending: r.get(2)?,
            held: r.get(3)?,
            failed: r.get(4)?,
            oldest_pending_ns: r.get(5)?,
            last_sent_ns: r.get(6)?,
            last_error: None,
        })
    })?;
    let mut out: Vec<ChannelStats> = rows.collect::<Result<_, _>>()?;
    for s in &mut out {
        s.last_error = conn
            .prepare_cached(
                "SELECT last_error FROM alert_delivery WHERE channel = ?1 AND last_error IS NOT NULL \
                 AND state IN ('pending', 'digesting', 'failed') AND next_attempt_ns >= ?2 \
                 ORDER BY next_attempt_ns DESC LIMIT 1",
            )?
            .query_row(params![&s.channel, s.last_sent_ns.unwrap_or(0)], |r| r.get(0))
            .optional()?;
    }
    Ok(out)
}

/// Forgets delivered and given-up messages and closed alerts older than
/// `before_ns` (the history is kept for a while, not for ever).
pub fn prune(conn: &Connection, before_ns: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM alert WHERE cleared_ns IS NOT NULL AND cleared_ns < ?1 AND NOT EXISTS \
         (SELECT 1 FROM alert_event e JOIN alert_delivery d ON d.event_id = e.id \
          WHERE e.alert_id = alert.id AND d.state IN ('pending', 'held', 'digesting'))",
        [before_ns],
    )
}

/// A channel added from the web UI: its settings as JSON (no secret value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChannel {
    pub name: String,
    pub settings: String,
    pub updated_ns: i64,
}

pub fn stored_channels(conn: &Connection) -> rusqlite::Result<Vec<StoredChannel>> {
    let mut st = conn.prepare_cached("SELECT name, settings, updated_ns FROM alert_channel ORDER BY name")?;
    let rows = st.query_map([], |r| {
        Ok(StoredChannel {
            name: r.get(0)?,
            settings: r.get(1)?,
            updated_ns: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Adds or replaces a channel, audited in the same transaction.
pub fn store_channel(conn: &Connection, actor: &str, name: &str, settings: &str, now_ns: i64) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let existed = tx
        .query_row("SELECT 1 FROM alert_channel WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some();
    tx.execute(
        "INSERT INTO alert_channel (name, settings, created_ns, updated_ns) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (name) DO UPDATE SET settings = ?2, updated_ns = ?3",
        params![name, settings, now_ns],
    )?;
    super::audit::append(
        &tx,
        actor,
        if existed {
            "alerts.channel.update"
        } else {
            "alerts.channel.add"
        },
        name,
        super::audit::Outcome::Ok,
        settings,
    )?;
    tx.commit()
}

/// Removes a channel added from the web UI (its undelivered messages are
/// dropped with it), audited. False when there was none.
pub fn delete_channel(conn: &Connection, actor: &str, name: &str) -> rusqlite::Result<bool> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute("DELETE FROM alert_channel WHERE name = ?1", [name])?;
    if n > 0 {
        let dropped = tx.execute(
            "DELETE FROM alert_delivery WHERE channel = ?1 AND state IN ('pending', 'held', 'digesting')",
            [name],
        )?;
        super::audit::append(
            &tx,
            actor,
            "alerts.channel.delete",
            name,
            super::audit::Outcome::Ok,
            &format!("{dropped} undelivered message(s) dropped"),
        )?;
    }
    tx.commit()?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::alerts::{raise, Kind, Raise};

    #[test]
    fn fan_out_send_hold_and_digest_are_durable_steps() {
        let d = tempfile::tempdir().unwrap();
        let idx = crate::db::Index::open(&d.path().join("i.db")).unwrap();
        let c = idx.conn();
        raise(c, &Raise::camera(Kind::CameraOffline, "a", "offline").after(10), 0).unwrap();
        assert!(due_events(c, 5, 10).unwrap().is_empty(), "not due yet");
        let ev = due_events(c, 10, 10).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].alert.code, "camera.offline");
        fan_out(c, ev[0].id, &[("hook".into(), false), ("sms".into(), true)], 10).unwrap();
        assert!(due_events(c, 10, 10).unwrap().is_empty(), "fanned once");
        let p = deliveries(c, "hook", "pending", Some(10), 10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(deliveries(c, "sms", "held", None, 10).unwrap().len(), 1, "damped");
        mark_retry(c, "hook", Target::Event(ev[0].id), 50, "connection refused", false).unwrap();
        assert!(
            deliveries(c, "hook", "pending", Some(20), 10).unwrap().is_empty(),
            "backing off"
        );
        mark_sent(c, "hook", Target::Event(ev[0].id), 60).unwrap();
        assert_eq!(sent_since(c, "hook", 0).unwrap(), 1);
        assign_digest(c, "sms", &[ev[0].id], "vigil-d1", 70).unwrap();
        mark_sent(c, "sms", Target::Digest("vigil-d1"), 71).unwrap();
        assert_eq!(
            sent_since(c, "sms", 0).unwrap(),
            0,
            "digests are outside the rate limit"
        );
        assert_eq!(last_digest_ns(c, "sms").unwrap(), Some(71));
        let st = channel_stats(c).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!((st[0].sent, st[0].pending), (1, 0));
    }

    #[test]
    fn a_withdrawn_message_is_not_handed_out_and_removed_channels_give_up() {
        let d = tempfile::tempdir().unwrap();
        let idx = crate::db::Index::open(&d.path().join("i.db")).unwrap();
        let c = idx.conn();
        raise(c, &Raise::camera(Kind::CameraOffline, "a", "offline").after(10), 0).unwrap();
        let ev = due_events(c, 10, 10).unwrap();
        // The camera came back between the read and the fan-out.
        crate::db::alerts::clear(c, Kind::CameraOffline, "a", 9).unwrap();
        fan_out(c, ev[0].id, &[("hook".into(), false)], 10).unwrap();
        assert!(
            deliveries(c, "hook", "pending", None, 10).unwrap().is_empty(),
            "withdrawn: nothing sent"
        );
        // A channel that is gone gives its messages up; sent rows stay sent.
        raise(c, &Raise::new(Kind::DiskLow, "", "low"), 20).unwrap();
        let ev = due_events(c, 20, 10).unwrap();
        fan_out(c, ev[0].id, &[("old".into(), false), ("hook".into(), false)], 20).unwrap();
        mark_sent(c, "hook", Target::Event(ev[0].id), 21).unwrap();
        assert_eq!(give_up_removed_channels(c, &["hook".into()], 22).unwrap(), 1);
        assert_eq!(deliveries(c, "old", "failed", None, 10).unwrap().len(), 1);
        // A sent delivery is never put into a digest.
        assign_digest(c, "hook", &[ev[0].id], "vigil-x-d", 23).unwrap();
        assert_eq!(deliveries(c, "hook", "sent", None, 10).unwrap().len(), 1);
        assert!(!digest_waiting(c, "hook").unwrap());
    }
}
