//! The full check of the audit log: its hash chain ([`audit::verify`]), its
//! signed checkpoints ([`audit_checkpoint`]) and, where there is one, the
//! journal's copy of every entry and checkpoint. Each finding names what it
//! is: `truncated` (entries a signature or the journal saw are gone),
//! `rewritten` (a signed or logged hash no longer matches), a bad or foreign
//! signature, a gap in the checkpoints, or an unanchored chain.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};
use vigil_format::bundle::audit_head::checkpoint_message;
use vigil_format::bundle::key::{fingerprint, verify_signature};

use crate::base::time::format_ns;
use crate::db::audit;
use crate::db::audit_checkpoint::{self, Checkpoint, CHECKPOINT_LOG_PREFIX};

/// What the check found.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    /// Entries in the database.
    pub entries: u64,
    /// Every problem, in words; empty when the log is intact.
    pub problems: Vec<String>,
    /// The newest checkpoint whose signature verifies and whose head matches.
    pub anchor: Option<Checkpoint>,
    /// Entries after the anchor (written since it was signed).
    pub unanchored: i64,
    /// Remarks that are not problems (no device key yet, journal not found).
    pub notes: Vec<String>,
}

impl AuditReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line on the anchor, e.g. `anchored: checkpoint 12 at entry 320,
    /// signed 2026-...; 4 entries not yet anchored`.
    pub fn anchor_line(&self) -> String {
        match &self.anchor {
            Some(cp) => format!(
                "anchored: checkpoint {} at entry {}, signed {}; {}",
                cp.seq,
                cp.entry_id,
                format_ns(cp.ts_ns),
                if self.unanchored > 0 {
                    format!("{} entries not yet anchored", self.unanchored)
                } else {
                    "every entry anchored".to_string()
                }
            ),
            None => format!("not anchored: {} entries not yet anchored", self.unanchored),
        }
    }
}

/// The journal's (or a saved daemon log's) copy: the last logged hash of
/// each entry id (a rolled-back entry's id is logged again by the entry
/// that took it), and the logged checkpoints. Only lines of `device_id`.
#[derive(Clone, Debug, Default)]
pub struct LogCopy {
    /// The device of the log's newest checkpoint line: the device the
    /// daemon last ran as.
    pub latest_device: Option<String>,
    pub entries: BTreeMap<i64, String>,
    /// (seq, entry id, head hash hex).
    pub checkpoints: Vec<(i64, i64, String)>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    Some(&rest[..rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len())])
}

/// Reads the audit lines out of a daemon log (any line format that keeps
/// the message: `journalctl -o cat`, the daemon's stderr). Each entry line
/// belongs to the device named by the next checkpoint line after it (the
/// daemon writes one within a second, and at start and stop); lines of
/// another device (an earlier installation) are left out. Without a device
/// id (the database has none), the lines of the newest device are kept.
pub fn parse_log(text: &str, device_id: Option<&str>) -> LogCopy {
    enum Line {
        Entry(i64, String),
        Checkpoint(i64, i64, String, String),
    }
    let mut lines = Vec::new();
    for l in text.lines() {
        if let Some(id) = field(l, audit::ENTRY_LOG_PREFIX).and_then(|s| s.parse().ok()) {
            if let Some(h) = field(l, " hash=") {
                lines.push(Line::Entry(id, h.to_ascii_lowercase()));
            }
        } else if let Some(seq) = field(l, CHECKPOINT_LOG_PREFIX).and_then(|s| s.parse().ok()) {
            if let (Some(e), Some(h), Some(d)) = (
                field(l, " entry=").and_then(|s| s.parse().ok()),
                field(l, " head="),
                field(l, " device="),
            ) {
                lines.push(Line::Checkpoint(seq, e, h.to_ascii_lowercase(), d.to_string()));
            }
        }
    }
    // Backwards: the device of the next checkpoint; after the last one,
    // the device of the last one.
    let mut device = lines.iter().rev().find_map(|l| match l {
        Line::Checkpoint(_, _, _, d) => Some(d.clone()),
        Line::Entry(..) => None,
    });
    let latest_device = device.clone();
    let device_id = match device_id {
        Some(d) => d.to_string(),
        None => latest_device.clone().unwrap_or_default(),
    };
    let mut keep = vec![false; lines.len()];
    for (i, l) in lines.iter().enumerate().rev() {
        if let Line::Checkpoint(_, _, _, d) = l {
            device = Some(d.clone());
        }
        keep[i] = device.as_deref() == Some(device_id.as_str());
    }
    let mut copy = LogCopy {
        latest_device,
        ..LogCopy::default()
    };
    for (l, k) in lines.into_iter().zip(keep) {
        match (l, k) {
            (Line::Entry(id, h), true) => {
                copy.entries.insert(id, h);
            }
            (Line::Checkpoint(s, e, h, _), true) => copy.checkpoints.push((s, e, h)),
            _ => {}
        }
    }
    copy
}

/// [`verify`] with this database's device identity (if made).
pub fn verify_with_device(conn: &Connection, log: Option<&LogCopy>) -> rusqlite::Result<AuditReport> {
    let device = crate::db::device::identity(conn)?;
    verify(conn, device.as_ref().map(|(id, pk)| (id.as_str(), pk)), log)
}

/// Checks the chain, the checkpoints against `device` (device id, public
/// key) and, when given, the log's copy.
pub fn verify(
    conn: &Connection,
    device: Option<(&str, &[u8; 32])>,
    log: Option<&LogCopy>,
) -> rusqlite::Result<AuditReport> {
    let mut rep = AuditReport::default();
    match audit::verify(conn)? {
        Ok(n) => rep.entries = n,
        Err(what) => {
            rep.problems.push(what);
            rep.entries = conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?;
        }
    }
    let last_id = audit_checkpoint::log_head(conn)?.map_or(0, |(id, _)| id);
    let hash_at = |id: i64| -> rusqlite::Result<Option<Vec<u8>>> {
        conn.query_row("SELECT hash FROM audit_log WHERE id = ?1", [id], |r| r.get(0))
            .optional()
    };
    let checkpoints = audit_checkpoint::all(conn)?;
    check_checkpoints(&mut rep, &checkpoints, device, last_id, &hash_at)?;
    rep.unanchored = last_id - rep.anchor.as_ref().map_or(0, |c| c.entry_id);
    if let Some(log) = log {
        if let Some(logged) = &log.latest_device {
            if device.is_none_or(|(id, _)| id != logged) {
                rep.problems.push(format!(
                    "device replaced: the log's newest checkpoints are signed by device {logged}, but this \
                     database's device is {}: the device identity was replaced or removed",
                    device.map_or("none".to_string(), |(id, _)| id.to_string())
                ));
            }
        }
        check_log(&mut rep, log, &checkpoints, last_id, &hash_at)?;
    }
    Ok(rep)
}

fn check_checkpoints(
    rep: &mut AuditReport,
    checkpoints: &[Checkpoint],
    device: Option<(&str, &[u8; 32])>,
    last_id: i64,
    hash_at: &dyn Fn(i64) -> rusqlite::Result<Option<Vec<u8>>>,
) -> rusqlite::Result<()> {
    let Some((device_id, public_key)) = device else {
        if checkpoints.is_empty() {
            rep.notes
                .push("no signed checkpoint: the chain is unanchored (no device key yet)".into());
        } else {
            rep.problems.push(format!(
                "{} signed checkpoints but no device key to check them with (the device row is gone)",
                checkpoints.len()
            ));
        }
        return Ok(());
    };
    if checkpoints.is_empty() {
        if last_id > 0 {
            rep.problems.push(format!(
                "no signed checkpoint: the chain is unanchored ({last_id} entries; the device key exists, so \
                 the daemon's checkpoints were deleted)"
            ));
        }
        return Ok(());
    }
    let mut expect_seq = 1;
    let mut covered_from = 1; // first entry the next good checkpoint covers
    let mut truncated: Option<&Checkpoint> = None;
    let mut rewritten: Option<(&Checkpoint, i64)> = None;
    let mut later_mismatches = 0;
    for cp in checkpoints {
        if cp.seq != expect_seq {
            rep.problems.push(format!(
                "checkpoint gap: checkpoints {expect_seq} to {} are missing (deleted) before checkpoint {}",
                cp.seq - 1,
                cp.seq
            ));
        }
        expect_seq = cp.seq + 1;
        if cp.public_key.as_slice() != public_key.as_slice() {
            let theirs =
                <[u8; 32]>::try_from(cp.public_key.as_slice()).map_or("(malformed)".to_string(), |k| fingerprint(&k));
            rep.problems.push(format!(
                "checkpoint {} is signed by another key ({theirs}), not the device key ({})",
                cp.seq,
                fingerprint(public_key)
            ));
            continue;
        }
        let signed_ok = <[u8; 32]>::try_from(cp.head_hash.as_slice()).is_ok_and(|h| {
            verify_signature(
                public_key,
                &checkpoint_message(device_id, cp.seq, cp.entry_id, &h, cp.ts_ns),
                &cp.signature,
            )
        });
        if !signed_ok {
            rep.problems
                .push(format!("checkpoint {} has a bad signature (forged or altered)", cp.seq));
            continue;
        }
        match hash_at(cp.entry_id)? {
            None if cp.entry_id > last_id => truncated = Some(cp),
            None => {} // a hole in the chain, reported by the chain check
            Some(h) if h != cp.head_hash => {
                if rewritten.is_none() {
                    rewritten = Some((cp, covered_from));
                } else {
                    later_mismatches += 1;
                }
            }
            Some(_) if rewritten.is_none() => {
                rep.anchor = Some(cp.clone());
                covered_from = cp.entry_id + 1;
            }
            Some(_) => {}
        }
    }
    if let Some(cp) = truncated {
        rep.problems.push(format!(
            "truncated: {} missing after entry {last_id}: checkpoint {} (signed {}) covers entry {}",
            entries(cp.entry_id - last_id),
            cp.seq,
            format_ns(cp.ts_ns),
            cp.entry_id
        ));
    }
    if let Some((cp, from)) = rewritten {
        rep.problems.push(format!(
            "rewritten: checkpoint {} (signed {}) covers entries {from} to {}, and its signed head no longer \
             matches entry {}: entries in that range were changed and the chain rehashed{}",
            cp.seq,
            format_ns(cp.ts_ns),
            cp.entry_id,
            cp.entry_id,
            if later_mismatches > 0 {
                format!(
                    " ({later_mismatches} later checkpoint{} do not match either)",
                    if later_mismatches == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            }
        ));
        rep.anchor = None;
    }
    Ok(())
}

fn check_log(
    rep: &mut AuditReport,
    log: &LogCopy,
    checkpoints: &[Checkpoint],
    last_id: i64,
    hash_at: &dyn Fn(i64) -> rusqlite::Result<Option<Vec<u8>>>,
) -> rusqlite::Result<()> {
    // Entries a logged checkpoint confirmed committed (their lines may
    // otherwise be of a transaction that rolled back).
    let confirmed = log.checkpoints.iter().map(|c| c.1).max().unwrap_or(0);
    let mut tail_end = None; // the highest logged entry id past the database's end
    let (mut holes, mut first_hole) = (0, None);
    let (mut differ, mut first_differ) = (0, None);
    for (&id, logged) in &log.entries {
        match hash_at(id)? {
            Some(h) if vigil_format::hex(&h) != *logged => {
                differ += 1;
                first_differ.get_or_insert(id);
            }
            Some(_) => {}
            None if id > last_id && id <= confirmed => tail_end = Some(id),
            None if id <= last_id => {
                holes += 1;
                first_hole.get_or_insert(id);
            }
            None => {}
        }
    }
    for (seq, entry_id, head) in &log.checkpoints {
        match hash_at(*entry_id)? {
            None if *entry_id > last_id => tail_end = tail_end.max(Some(*entry_id)),
            Some(h) if vigil_format::hex(&h) != *head && first_differ.is_none() => {
                differ = 1;
                first_differ = Some(*entry_id);
            }
            _ => {}
        }
        if !checkpoints.iter().any(|c| c.seq == *seq) {
            rep.problems.push(format!(
                "journal: checkpoint {seq} (entry {entry_id}) is logged but not in the database (deleted)"
            ));
        }
    }
    if let Some(end) = tail_end {
        rep.problems.push(format!(
            "truncated: {} missing after entry {last_id}: the journal shows entries up to {end}",
            entries(end - last_id)
        ));
    }
    if let Some(first) = first_hole {
        rep.problems.push(format!(
            "journal: {holes} logged entries are missing from the database, the first is entry {first}"
        ));
    }
    if let Some(first) = first_differ {
        rep.problems.push(format!(
            "rewritten: {differ} entries differ from their journal copy, the first is entry {first}"
        ));
    }
    if log.entries.is_empty() && log.checkpoints.is_empty() {
        rep.notes
            .push("journal: no audit lines of this device (not cross-checked)".into());
    } else {
        rep.notes.push(format!(
            "journal: {} entries and {} checkpoints cross-checked",
            log.entries.len(),
            log.checkpoints.len()
        ));
    }
    Ok(())
}

/// "1 entry is", "3 entries are".
fn entries(n: i64) -> String {
    if n == 1 {
        "1 entry is".to_string()
    } else {
        format!("{n} entries are")
    }
}
