//! The audit log: an append-only table in which every entry carries the
//! SHA-256 of the one before it, so an edited, deleted or reordered entry
//! breaks the chain. Each entry also goes to the journal (target `audit`).

use ring::digest;
use rusqlite::{params, Connection, OptionalExtension};

/// Who did something: `cli:<user>`, `daemon`, or (later) `user:<name>`.
/// The CLI user is the one sudo ran for, else the process's own user.
pub fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(process_user)
        .unwrap_or_else(|| "unknown".to_string());
    format!("cli:{user}")
}

/// The real user of this process, from /proc and /etc/passwd (no unsafe FFI).
fn process_user() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid {uid}")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub ts_ns: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

pub(crate) fn entry_hash(prev: &[u8], e: &Entry) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"vigil audit v1\0");
    ctx.update(prev);
    ctx.update(&e.id.to_be_bytes());
    ctx.update(&e.ts_ns.to_be_bytes());
    for field in [&e.actor, &e.action, &e.target, &e.outcome, &e.detail] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Appends one entry and returns its id. Inside the caller's transaction
/// when the entry belongs to a change (so both commit or neither does): that
/// transaction must be IMMEDIATE (it holds the write lock, so no other
/// connection can append between the read of the head and the insert).
/// Outside a transaction it runs in its own IMMEDIATE transaction. Either
/// way the id and the previous hash are read under the write lock, so two
/// connections never take the same id.
pub fn append(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    outcome: Outcome,
    detail: &str,
) -> rusqlite::Result<i64> {
    if !conn.is_autocommit() {
        return append_locked(conn, actor, action, target, outcome, detail);
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let id = append_locked(&tx, actor, action, target, outcome, detail)?;
    tx.commit()?;
    Ok(id)
}

/// [`append`] on a connection that holds the write lock.
fn append_locked(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    outcome: Outcome,
    detail: &str,
) -> rusqlite::Result<i64> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (id, prev) = match last {
        Some((id, h)) => (id + 1, h),
        None => (1, vec![0u8; 32]),
    };
    let e = Entry {
        id,
        ts_ns: crate::base::clock::now_ns(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.as_str().to_string(),
        detail: detail.to_string(),
    };
    let hash = entry_hash(&prev, &e);
    conn.execute(
        "INSERT INTO audit_log (id, ts_ns, actor, action, target, outcome, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.id,
            e.ts_ns,
            e.actor,
            e.action,
            e.target,
            e.outcome,
            e.detail,
            prev,
            hash.as_slice()
        ],
    )?;
    // The journal's copy: `audit-entry id=N hash=HEX`, then the fields
    // quoted and escaped (no control character can start a fake line).
    // `vigil audit verify --log` reads these lines back.
    tracing::info!(
        target: "audit",
        actor = ?actor,
        action = ?action,
        target = ?target,
        outcome = outcome.as_str(),
        detail = ?detail,
        "{ENTRY_LOG_PREFIX}{id} hash={}",
        vigil_format::hex(&hash)
    );
    Ok(id)
}

/// How an entry's journal line starts: `audit-entry id=`.
pub const ENTRY_LOG_PREFIX: &str = "audit-entry id=";

/// The latest entries, newest last.
pub fn tail(conn: &Connection, n: usize) -> rusqlite::Result<Vec<Entry>> {
    let mut st = conn.prepare(
        "SELECT id, ts_ns, actor, action, target, outcome, detail FROM \
         (SELECT * FROM audit_log ORDER BY id DESC LIMIT ?1) ORDER BY id",
    )?;
    let rows = st.query_map([n as i64], entry_from_row)?;
    rows.collect()
}

/// Which entries [`search`] returns; every field narrows the search.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Actions that start with this (`user.` for every user change).
    pub action_prefix: Option<String>,
    /// Entries at or after this time (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Entries before this time.
    pub until_ns: Option<i64>,
    /// Entries older than this id (the next page).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// The entries `f` selects, newest first, at most `f.limit`.
pub fn search(conn: &Connection, f: &Filter) -> rusqlite::Result<Vec<Entry>> {
    let mut st = conn.prepare_cached(
        "SELECT id, ts_ns, actor, action, target, outcome, detail FROM audit_log \
         WHERE (?1 IS NULL OR actor = ?1) \
           AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2) \
           AND (?3 IS NULL OR ts_ns >= ?3) AND (?4 IS NULL OR ts_ns < ?4) \
           AND (?5 IS NULL OR id < ?5) \
         ORDER BY id DESC LIMIT ?6",
    )?;
    let rows = st.query_map(
        rusqlite::params![
            f.actor,
            f.action_prefix,
            f.since_ns,
            f.until_ns,
            f.before_id,
            f.limit as i64
        ],
        entry_from_row,
    )?;
    rows.collect()
}

/// Columns 0..7: id, ts_ns, actor, action, target, outcome, detail.
pub(crate) fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        ts_ns: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        outcome: r.get(5)?,
        detail: r.get(6)?,
    })
}

/// The first break in the chain, if any, in words.
pub fn verify(conn: &Connection) -> rusqlite::Result<Result<u64, String>> {
    let mut st = conn.prepare(
        "SELECT id, ts_ns, actor, action, target, outcome, detail, prev_hash, hash FROM audit_log ORDER BY id",
    )?;
    let mut rows = st.query([])?;
    let mut prev = vec![0u8; 32];
    let mut expect_id = 1i64;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let e = entry_from_row(r)?;
        let prev_hash: Vec<u8> = r.get(7)?;
        let hash: Vec<u8> = r.get(8)?;
        if e.id != expect_id {
            return Ok(Err(format!("entry {expect_id} is missing (next entry is {})", e.id)));
        }
        if prev_hash != prev {
            return Ok(Err(format!(
                "entry {} does not follow entry {} (deleted or reordered)",
                e.id,
                e.id - 1
            )));
        }
        if hash != entry_hash(&prev, &e) {
            return Ok(Err(format!("entry {} was edited", e.id)));
        }
        prev = hash;
        expect_id += 1;
        n += 1;
    }
    Ok(Ok(n))
}

/// An IMMEDIATE transaction (it holds the write lock from the start) with
/// the audit entries that belong to its change: they commit together or not
/// at all. Dropped without [`AuditedTx::commit`], it rolls back. The
/// keyring's and the secrets' statements are methods of it in their modules.
pub struct AuditedTx<'a>(pub(in crate::db) rusqlite::Transaction<'a>);

impl<'a> AuditedTx<'a> {
    pub fn begin(index: &'a mut crate::db::Index) -> rusqlite::Result<Self> {
        Ok(AuditedTx(
            index
                .conn_mut()
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
        ))
    }

    pub fn commit(self) -> rusqlite::Result<()> {
        self.0.commit()
    }

    /// Appends an audit entry that commits (or not) with the transaction.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> rusqlite::Result<i64> {
        append(&self.0, actor, action, target, outcome, detail)
    }
}

/// Test support: what an attacker with the database file can do.
#[cfg(test)]
pub mod tests_support {
    /// Recomputes every entry's `prev_hash` and `hash` with the public
    /// formula, in id order, as after an edit.
    pub fn rehash(conn: &rusqlite::Connection) {
        let mut st = conn
            .prepare("SELECT id, ts_ns, actor, action, target, outcome, detail FROM audit_log ORDER BY id")
            .unwrap();
        let rows: Vec<super::Entry> = st
            .query_map([], super::entry_from_row)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut prev = vec![0u8; 32];
        for e in rows {
            let h = super::entry_hash(&prev, &e);
            conn.execute(
                "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                rusqlite::params![prev, h.as_slice(), e.id],
            )
            .unwrap();
            prev = h.to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Index) {
        let d = tempfile::tempdir().unwrap();
        let i = crate::db::Index::open(&d.path().join("v.db")).unwrap();
        (d, i)
    }

    #[test]
    fn search_filters_newest_first() {
        let (_d, i) = db();
        let c = i.conn();
        for (actor, action) in [
            ("user:a", "user.add"),
            ("user:b", "login"),
            ("user:a", "user.role"),
            ("user:a", "login"),
        ] {
            append(c, actor, action, "x", Outcome::Ok, "").unwrap();
        }
        let ids = |f: Filter| -> Vec<i64> { search(c, &f).unwrap().iter().map(|e| e.id).collect() };
        let all = Filter {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(ids(all.clone()), [4, 3, 2, 1]);
        let users = Filter {
            action_prefix: Some("user.".into()),
            ..all.clone()
        };
        assert_eq!(ids(users), [3, 1]);
        let by_a = Filter {
            actor: Some("user:a".into()),
            before_id: Some(4),
            limit: 1,
            ..all.clone()
        };
        assert_eq!(ids(by_a), [3]);
        let none = Filter {
            since_ns: Some(i64::MAX),
            ..all
        };
        assert!(ids(none).is_empty());
    }

    #[test]
    fn chain_detects_edit_delete_and_reorder() {
        let (_d, i) = db();
        let c = i.conn();
        for n in 0..5 {
            append(c, "cli:t", "secret.read", &format!("s{n}"), Outcome::Ok, "").unwrap();
        }
        assert_eq!(verify(c).unwrap(), Ok(5));
        c.execute("UPDATE audit_log SET outcome = 'denied' WHERE id = 3", [])
            .unwrap();
        assert_eq!(verify(c).unwrap(), Err("entry 3 was edited".into()));
        c.execute("UPDATE audit_log SET outcome = 'ok' WHERE id = 3", [])
            .unwrap();
        c.execute("DELETE FROM audit_log WHERE id = 2", []).unwrap();
        assert!(verify(c).unwrap().unwrap_err().contains("entry 2 is missing"));
    }

    /// Eight connections appending at once: every append gets its own id
    /// (no `UNIQUE constraint failed`), and the chain stays whole.
    #[test]
    fn concurrent_appends_on_separate_connections_never_share_an_id() {
        let (d, i) = db();
        drop(i);
        let path = d.path().join("v.db");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let idx = crate::db::Index::open(&path).unwrap();
                    for n in 0..50 {
                        append(
                            idx.conn(),
                            &format!("cli:t{t}"),
                            "test",
                            &format!("{n}"),
                            Outcome::Ok,
                            "",
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let i = crate::db::Index::open(&path).unwrap();
        assert_eq!(verify(i.conn()).unwrap(), Ok(400));
    }
}

#[cfg(test)]
mod guard {
    /// The CLI and the web layer call the function that performs an action;
    /// that function (in db, keys, evidence, ingest, ...) writes the action's
    /// audit entry, in its transaction. An entry composed in `cli/` or `web/`
    /// is an entry that a second caller of the action would miss or write
    /// differently.
    #[test]
    fn cli_and_web_write_no_audit_entries_themselves() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    sources(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for layer in ["cli", "web"] {
            sources(&src.join(layer), &mut files);
        }
        assert!(files.len() > 10, "found the sources of cli/ and web/");
        let offenders: Vec<String> = files
            .iter()
            .filter(|p| std::fs::read_to_string(p).unwrap().contains("audit::append"))
            .map(|p| p.strip_prefix(&src).unwrap_or(p).display().to_string())
            .collect();
        assert!(
            offenders.is_empty(),
            "{offenders:?} write audit entries: an entry belongs in the domain function that performs \
             the action (db::users, db::cameras, evidence::bundle, keys::mfa, ...), written in the \
             same transaction as the change; the CLI and the web only pass the actor"
        );
    }
}
