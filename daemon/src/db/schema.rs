//! The index's schema, one migration per version: a database at
//! `PRAGMA user_version` N runs migrations N+1.. in one transaction each
//! ([`super::Index::open`]). Never edit a released migration; add one.

const SCHEMA_V1: &str = r#"
CREATE TABLE camera (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'unknown',
    state_since_ns INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE recording (
    id INTEGER PRIMARY KEY,
    camera_id INTEGER NOT NULL REFERENCES camera(id),
    file_name TEXT NOT NULL UNIQUE,
    file_id BLOB NOT NULL,
    key_id BLOB NOT NULL,
    codec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('writing', 'complete', 'recovered')),
    start_wall_ns INTEGER NOT NULL,
    observed_wall_ns INTEGER NOT NULL,
    timescale INTEGER NOT NULL,
    start_pts INTEGER NOT NULL,
    end_pts INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    sha256 BLOB,
    end_reason TEXT
);
CREATE INDEX recording_camera_start ON recording (camera_id, start_wall_ns, id);
CREATE TABLE chunk (
    recording_id INTEGER NOT NULL REFERENCES recording(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL,
    first_pts INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    key_frame INTEGER NOT NULL,
    PRIMARY KEY (recording_id, idx)
) WITHOUT ROWID;
CREATE TABLE garbage (
    file_name TEXT PRIMARY KEY,
    recording_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    queued_ns INTEGER NOT NULL
);
"#;

/// v2: the wall-clock end of each recording as an indexed column
/// (`start_wall_ns + (end_pts - start_pts)` in ns), so range queries and the
/// last-end lookup use an index instead of reading every row.
const SCHEMA_V2: &str = r#"
ALTER TABLE recording ADD COLUMN end_wall_ns INTEGER NOT NULL DEFAULT 0;
UPDATE recording SET end_wall_ns = start_wall_ns + ((end_pts - start_pts) * 1000000000) / timescale;
CREATE INDEX recording_camera_end ON recording (camera_id, end_wall_ns);
"#;

/// v3: the keyring (the KEK's id and escrow, wrapped data keys), the
/// encrypted secrets store, the audit log and key jobs (re-encryption).
const SCHEMA_V3: &str = r#"
CREATE TABLE keyring (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    kek_id BLOB NOT NULL,
    kek_generation INTEGER NOT NULL,
    kek_created_ns INTEGER NOT NULL,
    sealing TEXT NOT NULL,
    pcrs TEXT NOT NULL,
    recovery_pub BLOB NOT NULL,
    escrow BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    rotated_ns INTEGER
);
CREATE TABLE data_key (
    id BLOB PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('recording', 'secrets')),
    scope TEXT NOT NULL,
    camera_id INTEGER,
    day TEXT,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    created_ns INTEGER NOT NULL,
    kek_id BLOB NOT NULL,
    nonce BLOB NOT NULL,
    wrapped BLOB NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX data_key_active_scope ON data_key (scope) WHERE state = 'active';
CREATE INDEX recording_key ON recording (key_id);
CREATE TABLE secret (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    key_id BLOB NOT NULL,
    nonce BLOB NOT NULL,
    value BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    expires_ns INTEGER
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE key_job (
    key_id BLOB PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('reencrypt')),
    reason TEXT NOT NULL,
    started_ns INTEGER NOT NULL
);
"#;

/// v4: users, sessions (hashed ids) and API tokens (hashed) for the HTTPS API.
const SCHEMA_V4: &str = r#"
CREATE TABLE user (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    totp_last_step INTEGER,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE session (
    id_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    client TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE api_token (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash BLOB NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_ns INTEGER NOT NULL,
    last_used_ns INTEGER
);
"#;

/// v5: cameras added from the web UI (passwords in the secrets store).
const SCHEMA_V5: &str = r#"
CREATE TABLE managed_camera (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    username TEXT,
    has_password INTEGER NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// v6: evidence. The device identity, exports and the recordings each one
/// drew on, legal holds, and the fixity (scrub) result of every recording.
const SCHEMA_V6: &str = r#"
CREATE TABLE device (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    signing_public_key BLOB NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE export (
    id INTEGER PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    operator TEXT NOT NULL,
    camera TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    file_name TEXT,
    bytes INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    manifest_sha256 BLOB NOT NULL
);
CREATE TABLE export_recording (
    export_id INTEGER NOT NULL REFERENCES export(id) ON DELETE CASCADE,
    recording_id INTEGER NOT NULL,
    PRIMARY KEY (export_id, recording_id)
) WITHOUT ROWID;
CREATE INDEX export_recording_by_recording ON export_recording (recording_id);
CREATE TABLE legal_hold (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('recording', 'range', 'export')),
    recording_id INTEGER,
    camera_id INTEGER,
    start_ns INTEGER,
    end_ns INTEGER,
    export_id INTEGER,
    reason TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_ns INTEGER NOT NULL,
    released_by TEXT,
    released_ns INTEGER,
    release_reason TEXT
);
ALTER TABLE recording ADD COLUMN fixity_ns INTEGER;
ALTER TABLE recording ADD COLUMN fixity_ok INTEGER;
ALTER TABLE recording ADD COLUMN fixity_detail TEXT;
CREATE INDEX recording_fixity ON recording (fixity_ns);
CREATE INDEX recording_start ON recording (start_wall_ns);
ALTER TABLE recording ADD COLUMN continues_previous INTEGER NOT NULL DEFAULT 0;
"#;

/// v7: the web boundary hardened. API tokens belong to a user (disabling
/// the user disables them), expire and can be revoked; users and tokens may
/// be limited to a set of cameras (`cameras`: NULL for every camera, else a
/// JSON array of names); the audit log's signed checkpoints (the anchor:
/// entry count and head hash, signed with the device key).
const SCHEMA_V7: &str = r#"
ALTER TABLE api_token ADD COLUMN user_id INTEGER REFERENCES user(id) ON DELETE CASCADE;
ALTER TABLE api_token ADD COLUMN expires_ns INTEGER;
ALTER TABLE api_token ADD COLUMN revoked_ns INTEGER;
ALTER TABLE api_token ADD COLUMN cameras TEXT;
ALTER TABLE user ADD COLUMN cameras TEXT;
CREATE TABLE audit_checkpoint (
    seq INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL,
    head_hash BLOB NOT NULL,
    ts_ns INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB NOT NULL
);
"#;
/// v8: alerts and their durable outbox (`db::alerts`, `db::alert_outbox`):
/// an alert per problem (open while `cleared_ns` is NULL), one outbox event
/// per message it owes ("raised", "resolved"), one delivery row per event
/// and channel; the channels added from the web UI; whether the daemon is
/// running (an unclean stop is noticed at the next start).
const SCHEMA_V8: &str = r#"
CREATE TABLE alert (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    subject TEXT NOT NULL,
    camera TEXT,
    message TEXT NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    cleared_ns INTEGER,
    occurrences INTEGER NOT NULL DEFAULT 1,
    silent INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alert_open ON alert (code, subject) WHERE cleared_ns IS NULL;
CREATE INDEX alert_subject ON alert (code, subject, first_seen_ns);
CREATE TABLE alert_event (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alert(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('raised', 'resolved')),
    at_ns INTEGER NOT NULL,
    not_before_ns INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'fanned', 'cancelled'))
);
CREATE INDEX alert_event_pending ON alert_event (state, not_before_ns);
CREATE TABLE alert_delivery (
    event_id INTEGER NOT NULL REFERENCES alert_event(id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'held', 'digesting', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL,
    queued_ns INTEGER NOT NULL,
    sent_ns INTEGER,
    last_error TEXT,
    digest_key TEXT,
    damped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, channel)
) WITHOUT ROWID;
CREATE INDEX alert_delivery_channel ON alert_delivery (channel, state, next_attempt_ns);
CREATE TABLE alert_channel (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE daemon_run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    running INTEGER NOT NULL,
    started_ns INTEGER NOT NULL,
    stop_result TEXT
);
"#;
/// v9: ONVIF. A managed camera's sub stream, ONVIF device service and
/// whether its audio is recorded; each camera's last measured clock drift
/// (`db::camera_clock`).
const SCHEMA_V9: &str = r#"
ALTER TABLE managed_camera ADD COLUMN sub_url TEXT;
ALTER TABLE managed_camera ADD COLUMN onvif_url TEXT;
ALTER TABLE managed_camera ADD COLUMN record_audio INTEGER NOT NULL DEFAULT 0;
CREATE TABLE camera_clock (
    camera TEXT PRIMARY KEY,
    drift_ms INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('onvif', 'rtcp')),
    measured_ns INTEGER NOT NULL
) WITHOUT ROWID;
"#;
/// Version 10: the cameras' own events (ONVIF motion and tamper), kept as
/// long as the footage they point into.
const SCHEMA_V10: &str = r#"
CREATE TABLE camera_event (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('motion', 'tamper')),
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    topic TEXT NOT NULL
);
CREATE INDEX camera_event_time ON camera_event (start_ns);
CREATE INDEX camera_event_open ON camera_event (camera, kind, end_ns);
"#;
/// Version 11: off-box replication (`db::replication`); a restored
/// recording's camera id on the box that wrote it. A row per recording
/// queued for the bucket, the parts of a multipart upload in flight (so an
/// upload resumes after a restart or `kill -9`), the data keys and the audit
/// head already uploaded, and the target last replicated to.
const SCHEMA_V11: &str = r#"
ALTER TABLE recording ADD COLUMN file_camera_id INTEGER;
CREATE INDEX recording_sha256 ON recording (sha256);
CREATE TABLE replica (
    recording_id INTEGER PRIMARY KEY REFERENCES recording(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'done')),
    keep_local INTEGER NOT NULL DEFAULT 0,
    queued_ns INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    upload_id TEXT,
    part_size INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ns INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    uploaded_ns INTEGER,
    object_key TEXT,
    holds_stated TEXT NOT NULL DEFAULT '',
    generation INTEGER NOT NULL DEFAULT 0,
    resend INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX replica_queue ON replica (state, next_try_ns);
CREATE TABLE replica_part (
    recording_id INTEGER NOT NULL REFERENCES replica(recording_id) ON DELETE CASCADE,
    part_no INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (recording_id, part_no)
) WITHOUT ROWID;
CREATE TABLE replica_key (
    key_id BLOB PRIMARY KEY,
    uploaded_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE replica_target (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    target TEXT NOT NULL,
    since_ns INTEGER NOT NULL,
    audit_head_entry INTEGER
);
"#;
/// Each step takes the schema from version i to i + 1.
pub(crate) const MIGRATIONS: [&str; 11] = [
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8, SCHEMA_V9, SCHEMA_V10,
    SCHEMA_V11,
];
