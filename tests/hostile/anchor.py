"""7: the audit anchor. With the daemon stopped, an attacker who can write the
index deletes the last entry (tail truncation), or rewrites a denied login
as ok and recomputes every hash with the v1 formula (rewrite and rehash).
`vigil audit verify` must exit 1 and name what it found."""
import hashlib
import shutil
import sqlite3
import struct

from verdict import Verdict


def entry_hash(prev, row):
    """daemon/src/db/audit.rs `entry_hash`, v1: no key, so anyone can recompute it."""
    i, ts, actor, action, target, outcome, detail = row
    h = hashlib.sha256()
    h.update(b"vigil audit v1\0")
    h.update(prev)
    h.update(struct.pack(">q", i))
    h.update(struct.pack(">q", ts))
    for f in (actor, action, target, outcome, detail):
        b = f.encode()
        h.update(struct.pack(">Q", len(b)))
        h.update(b)
    return h.digest()


def rehash(db):
    """Recomputes prev_hash/hash of every row, in id order, as the daemon would have."""
    c = sqlite3.connect(db)
    try:
        rows = c.execute("SELECT id, ts_ns, actor, action, target, outcome, detail FROM audit_log ORDER BY id").fetchall()
        prev = bytes(32)
        for r in rows:
            h = entry_hash(prev, r)
            c.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", (prev, h, r[0]))
            prev = h
        c.commit()
        return len(rows)
    finally:
        c.close()


def _files(db):
    return [db, db + "-wal", db + "-shm"]


def _copy(db, suffix):
    for f in _files(db):
        try:
            shutil.copy2(f, f + suffix)
        except FileNotFoundError:
            pass


def _restore(db, suffix):
    for f in _files(db):
        try:
            shutil.copy2(f + suffix, f)
        except FileNotFoundError:
            try:
                import os
                os.remove(f)
            except FileNotFoundError:
                pass


def audit_anchor(fx):
    """Needs the daemon stopped (the caller stops it)."""
    v = Verdict(7, "audit anchor: tail truncation and rewrite-and-rehash detected")
    db = fx.db
    # Fold the WAL in so the copy is one consistent file set.
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    o = fx.cli("audit", "verify")
    v.figure(f"untouched: exit {o.returncode}: {o.stdout.strip()[:200]}")
    v.check(o.returncode == 0, f"the untouched log does not verify: {o.returncode} {o.stdout}{o.stderr}")
    _copy(db, ".orig")
    try:
        c = sqlite3.connect(db)
        c.execute("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)")
        c.commit()
        c.close()
        o = fx.cli("audit", "verify")
        out = o.stdout + o.stderr
        problem = next((l for l in out.splitlines() if "truncated" in l), out.strip()[:200])
        v.figure(f"last entry deleted: exit {o.returncode}: {problem[:240]}")
        v.check(o.returncode == 1 and "truncated" in out, f"tail truncation: exit {o.returncode}, no 'truncated': {out[:300]}")
        _restore(db, ".orig")

        # An attacker who knows the design: the last 3 entries and every
        # checkpoint that covers them go. The database alone cannot tell
        # (documented); the daemon's log (the journal on a board) can.
        c = sqlite3.connect(db)
        top = c.execute("SELECT max(id) FROM audit_log").fetchone()[0]
        c.execute("DELETE FROM audit_log WHERE id > ?", (top - 3,))
        gone = c.execute("DELETE FROM audit_checkpoint WHERE entry_id > ?", (top - 3,)).rowcount
        c.commit()
        c.close()
        log = fx.path("daemon-log-copy.txt")
        with open(log, "w") as f:
            f.write(fx.log())
        o = fx.cli("audit", "verify", "--log", log)
        out = o.stdout + o.stderr
        problem = next((l for l in out.splitlines() if "truncated" in l), out.strip()[:200])
        v.figure(f"last 3 entries and {gone} checkpoints deleted, checked with --log: exit {o.returncode}: {problem[:240]}")
        v.check(o.returncode == 1 and "truncated" in out,
                f"tail and checkpoints cut, with the daemon's log: exit {o.returncode}, no 'truncated': {out[:300]}")
        _restore(db, ".orig")

        c = sqlite3.connect(db)
        row = c.execute("SELECT id FROM audit_log WHERE action = 'login' AND outcome != 'ok' ORDER BY id LIMIT 1").fetchone()
        if row is None:
            row = c.execute("SELECT id FROM audit_log WHERE action = 'login' ORDER BY id LIMIT 1").fetchone()
        if v.check(row is not None, "no login row to rewrite"):
            c.execute("UPDATE audit_log SET outcome = 'ok', detail = '' WHERE id = ?", (row[0],))
            c.commit()
        c.close()
        n = rehash(db)
        o = fx.cli("audit", "verify")
        out = o.stdout + o.stderr
        problem = next((l for l in out.splitlines() if "rewritten" in l), out.strip()[:200])
        v.figure(f"login row {row[0] if row else '?'} rewritten, {n} hashes recomputed: exit {o.returncode}: {problem[:240]}")
        v.check(o.returncode == 1 and "rewritten" in out, f"rewrite and rehash: exit {o.returncode}, no 'rewritten': {out[:300]}")
    finally:
        _restore(db, ".orig")
    v.finish()
    return v
