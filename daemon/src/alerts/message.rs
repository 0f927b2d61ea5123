//! What a receiver gets: an outbox event (or a digest of several) turned
//! into a [`Message`]: a one-line title, the human text and the JSON
//! payload of the contract in docs/alerts.md.

use serde_json::{json, Value};

use super::{Message, MessageKind, TransportContext};
use crate::config::alerts::Severity;
use crate::db::alert_outbox::{Delivery, Event};
use crate::db::alerts::Alert;

fn rfc3339(ns: i64) -> String {
    crate::base::time::format_ns(ns)
}

pub fn severity_of(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "info" => Severity::Info,
        _ => Severity::Warning,
    }
}

/// The alert as the payload's `alert` object.
pub fn alert_json(a: &Alert) -> Value {
    json!({
        "id": a.id,
        "code": a.code,
        "severity": a.severity,
        "camera": a.camera,
        "subject": a.subject,
        "message": a.message,
        "first_seen": rfc3339(a.first_seen_ns),
        "cleared": a.cleared_ns.map(rfc3339),
    })
}

/// A short title for an alert being raised.
fn raised_title(a: &Alert) -> String {
    let cam = a.camera.as_deref().unwrap_or("");
    let s = &a.subject;
    match a.code.as_str() {
        "camera.offline" => format!("Camera {cam} offline"),
        "recording.gap" => format!("Recording gap on camera {cam}"),
        "disk.low" => "Disk space at its floor".into(),
        "storage.paused" => "Recording paused: disk full".into(),
        "storage.write_failed" => format!("Writing recordings failed (camera {cam})"),
        "fixity.mismatch" => format!("A recording of camera {cam} changed on disk"),
        "recording.tampered" => format!("Tampered recording (camera {cam})"),
        "audit.tampered" => "The audit log was cut or rewritten".into(),
        "clock.unsynchronised" => "Clock not synchronised".into(),
        "camera.clock_drift" => format!("Camera {cam}'s clock drifts"),
        "login.lockout" => format!("User {s} locked out"),
        "login.failures" => format!("Repeated failed logins from {s}"),
        "keys.unseal_failed" => "Keys could not be unsealed".into(),
        "secret.expiring" => format!("Secret {s} expires soon"),
        "secret.expired" => format!("Secret {s} expired"),
        "replication.lagging" => "Replication lagging".into(),
        "daemon.restarted" => "Vigil restarted after an unclean stop".into(),
        other => other.to_string(),
    }
}

fn event_title(e: &Event) -> String {
    match e.kind.as_str() {
        "resolved" => format!("Resolved: {}", raised_title(&e.alert)),
        _ => raised_title(&e.alert),
    }
}

fn event_text(e: &Event) -> String {
    let a = &e.alert;
    match (e.kind.as_str(), a.cleared_ns) {
        ("resolved", Some(c)) => format!(
            "{} (since {}; resolved at {}, after {} s)",
            a.message,
            rfc3339(a.first_seen_ns),
            rfc3339(c),
            (c - a.first_seen_ns).max(0) / 1_000_000_000
        ),
        _ => format!("{} (at {})", a.message, rfc3339(a.first_seen_ns)),
    }
}

fn event_json(e: &Event) -> Value {
    json!({"type": e.kind, "idempotency_key": e.idempotency_key, "alert": alert_json(&e.alert)})
}

fn envelope(ctx: &TransportContext, kind: &str, key: &str, now_ns: i64) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("version".into(), json!(1));
    m.insert("type".into(), json!(kind));
    m.insert("idempotency_key".into(), json!(key));
    m.insert("device_id".into(), json!(ctx.device_id));
    m.insert("device_name".into(), json!(ctx.device_name));
    m.insert("sent_at".into(), json!(rfc3339(now_ns)));
    m
}

/// One event's message.
pub fn of_event(ctx: &TransportContext, e: &Event, now_ns: i64) -> Message {
    let mut m = envelope(ctx, &e.kind, &e.idempotency_key, now_ns);
    m.insert("alert".into(), alert_json(&e.alert));
    Message {
        idempotency_key: e.idempotency_key.clone(),
        kind: if e.kind == "resolved" {
            MessageKind::Resolved
        } else {
            MessageKind::Raised
        },
        severity: severity_of(&e.alert.severity),
        title: event_title(e),
        text: event_text(e),
        json: Value::Object(m),
        device_id: ctx.device_id.clone(),
        device_name: ctx.device_name.clone(),
    }
}

/// The digest `key` of deliveries `ds` (held back by the rate limit or
/// flap damping, or many at once): one line per event, the highest severity.
pub fn digest(ctx: &TransportContext, key: &str, ds: &[Delivery], now_ns: i64) -> Message {
    let severity = ds
        .iter()
        .map(|d| severity_of(&d.event.alert.severity))
        .max()
        .unwrap_or(Severity::Info);
    // Most severe first, open before cleared, newest first: what a person
    // must act on is at the top, also of a 320-character SMS.
    let rank = |d: &&Delivery| {
        (
            std::cmp::Reverse(severity_of(&d.event.alert.severity)),
            d.event.alert.cleared_ns.is_some(),
            std::cmp::Reverse(d.event.id),
        )
    };
    let mut sorted: Vec<&Delivery> = ds.iter().collect();
    sorted.sort_by_key(rank);
    let mut lines: Vec<String> = sorted
        .iter()
        .take(50)
        .map(|d| format!("- {}: {}", event_title(&d.event), event_text(&d.event)))
        .collect();
    if ds.len() > 50 {
        lines.push(format!("- and {} more (see the Alerts page)", ds.len() - 50));
    }
    let open = ds.iter().filter(|d| d.event.alert.cleared_ns.is_none()).count();
    let mut m = envelope(ctx, "digest", key, now_ns);
    m.insert("count".into(), json!(ds.len()));
    m.insert(
        "events".into(),
        Value::Array(sorted.iter().take(200).map(|d| event_json(&d.event)).collect()),
    );
    let first = sorted
        .first()
        .filter(|d| severity_of(&d.event.alert.severity) == Severity::Critical)
        .map(|d| format!("; first: {}", event_title(&d.event)))
        .unwrap_or_default();
    Message {
        idempotency_key: key.to_string(),
        kind: MessageKind::Digest,
        severity,
        title: format!("{} alert messages held back ({open} still open){first}", ds.len()),
        text: lines.join("\n"),
        json: Value::Object(m),
        device_id: ctx.device_id.clone(),
        device_name: ctx.device_name.clone(),
    }
}

/// A test message through one channel.
pub fn test(ctx: &TransportContext, key: &str, channel: &str, actor: &str, now_ns: i64) -> Message {
    let text = format!("A test message through channel {channel}, sent by {actor}. Nothing is wrong.");
    let mut m = envelope(ctx, "test", key, now_ns);
    m.insert(
        "alert".into(),
        json!({"id": null, "code": "alerts.test", "severity": "info", "camera": null, "subject": channel,
               "message": text, "first_seen": rfc3339(now_ns), "cleared": rfc3339(now_ns)}),
    );
    Message {
        idempotency_key: key.to_string(),
        kind: MessageKind::Test,
        severity: Severity::Info,
        title: format!("Test of channel {channel}"),
        text,
        json: Value::Object(m),
        device_id: ctx.device_id.clone(),
        device_name: ctx.device_name.clone(),
    }
}
