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
    /// The device whose lines these are: the database's, or without one
    /// the device of the log's newest checkpoint line.
    pub device: Option<String>,
    pub entries: BTreeMap<i64, String>,
    /// (seq, entry id, head hash hex).
    pub checkpoints: Vec<(i64, i64, String)>,
    /// Every other device the log shows (an earlier installation, or the
    /// identity an attacker removed): checked for a link to this database.
    pub others: Vec<OtherDevice>,
}

/// The lines of a device other than [`LogCopy::device`].
#[derive(Clone, Debug, Default)]
pub struct OtherDevice {
    pub device: String,
    pub entries: BTreeMap<i64, String>,
    /// Its newest checkpoint: entry id and time.
    pub last_entry: i64,
    pub last_ts_ns: i64,
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
        Checkpoint(i64, i64, String, String, i64),
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
                let ts = field(l, " ts_ns=").and_then(|s| s.parse().ok()).unwrap_or(0);
                lines.push(Line::Checkpoint(seq, e, h.to_ascii_lowercase(), d.to_string(), ts));
            }
        }
    }
    // Backwards: the device of the next checkpoint; after the last one,
    // the device of the last one.
    let mut device = lines.iter().rev().find_map(|l| match l {
        Line::Checkpoint(_, _, _, d, _) => Some(d.clone()),
        Line::Entry(..) => None,
    });
    let device_id = match device_id {
        Some(d) => d.to_string(),
        None => device.clone().unwrap_or_default(),
    };
    let mut owner = vec![None; lines.len()];
    for (i, l) in lines.iter().enumerate().rev() {
        if let Line::Checkpoint(_, _, _, d, _) = l {
            device = Some(d.clone());
        }
        owner[i] = device.clone();
    }
    let mut copy = LogCopy {
        device: (!device_id.is_empty()).then(|| device_id.clone()),
        ..LogCopy::default()
    };
    for (l, o) in lines.into_iter().zip(owner) {
        let Some(o) = o else { continue };
        if o == device_id {
            match l {
                Line::Entry(id, h) => {
                    copy.entries.insert(id, h);
                }
                Line::Checkpoint(s, e, h, _, _) => copy.checkpoints.push((s, e, h)),
            }
            continue;
        }
        let other = match copy.others.iter().position(|x| x.device == o) {
            Some(i) => &mut copy.others[i],
            None => {
                copy.others.push(OtherDevice {
                    device: o.clone(),
                    ..OtherDevice::default()
                });
                let n = copy.others.len() - 1;
                &mut copy.others[n]
            }
        };
        match l {
            Line::Entry(id, h) => {
                other.entries.insert(id, h);
            }
            Line::Checkpoint(_, e, _, _, ts) => {
                other.last_entry = e;
                other.last_ts_ns = ts;
            }
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
        check_devices(&mut rep, conn, log, device.map(|(id, _)| id), &hash_at)?;
        check_log(&mut rep, log, &checkpoints, last_id, &hash_at)?;
    }
    Ok(rep)
}

/// The devices the log shows against this database's. A device of the log
/// that this database's log continues (an entry hash it logged is this
/// database's entry at that id, or this database's first entry is dated
/// before that device's newest checkpoint) was this database's: if it is
/// not the database's device now, the identity was replaced or removed
/// (a problem). One with no such link is another installation (a note).
fn check_devices(
    rep: &mut AuditReport,
    conn: &Connection,
    log: &LogCopy,
    device: Option<&str>,
    hash_at: &dyn Fn(i64) -> rusqlite::Result<Option<Vec<u8>>>,
) -> rusqlite::Result<()> {
    let first_ts: Option<i64> = conn.query_row("SELECT min(ts_ns) FROM audit_log", [], |r| r.get(0))?;
    let shares_an_entry = |entries: &BTreeMap<i64, String>| -> rusqlite::Result<bool> {
        for (id, h) in entries {
            if hash_at(*id)?.is_some_and(|db| vigil_format::hex(&db) == *h) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let here = device.unwrap_or("none");
    if let Some(kept) = &log.device {
        if device.is_none() && shares_an_entry(&log.entries)? {
            rep.problems.push(format!(
                "device replaced: the log shows this database's entries signed by device {kept}, but the \
                 database has no device row: the device identity was removed"
            ));
        }
    }
    for o in &log.others {
        let dated_before = first_ts.is_some_and(|t| o.last_ts_ns > 0 && t <= o.last_ts_ns);
        if shares_an_entry(&o.entries)? || dated_before {
            rep.problems.push(format!(
                "device replaced: this database's log continues that of device {} (logged up to entry {}, \
                 {}), but its device is {here}: the device identity was replaced or removed",
                o.device,
                o.last_entry,
                format_ns(o.last_ts_ns)
            ));
        } else {
            rep.notes.push(format!(
                "the log also shows device {} (up to entry {}, {}): an earlier installation, unrelated to \
                 this database",
                o.device,
                o.last_entry,
                format_ns(o.last_ts_ns)
            ));
        }
    }
    Ok(())
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
