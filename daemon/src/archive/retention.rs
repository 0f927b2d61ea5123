//! Retention: frees space on its own, oldest first, and never deletes what
//! a case still needs.
//!
//! One pass applies, in order:
//! 1. age: per camera, recordings that ended more than `retention_days` ago
//!    (a recorded sub stream `<camera>.sub`: `sub_retention_days`, else its
//!    camera's age limit);
//! 2. size: per camera, the oldest recordings while the camera holds more than `max_bytes`;
//! 3. the storage floor: the oldest recordings of any camera while free space
//!    is below `min_free_percent` / `min_free_bytes`.
//!
//! It never touches the recording being written, nor anything under a legal
//! hold ([`crate::db::holds`]). Deletion is durable ([`Storage::delete_unheld`])
//! and batched; each pass that deletes writes one audit entry per rule with
//! the ids, the time range and the bytes freed.
//!
//! The daemon runs passes on a thread: every `interval`, every few seconds
//! when the floor is crossed, and at once when a recorder's write fails
//! ([`crate::storage::StorageAlarm`]). When space is below the floor and
//! nothing may be deleted, the alarm is set to "paused" (shown by health);
//! recorders keep retrying and resume as soon as space returns.

use std::time::Duration;

use crate::base::time::format_ns;
use crate::db::retention::{self as rows, Pick};
use crate::db::{Index, RecordingRow};
use crate::storage::{Storage, StorageError};

use crate::config::archive::RetentionPolicy;

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub deleted: Vec<(RecordingRow, &'static str)>,
    pub bytes_freed: u64,
    /// (available, floor) after the pass, if the filesystem could be read.
    pub space_after: Option<(u64, u64)>,
    /// Space is below the floor and nothing more may be deleted.
    pub below_floor: bool,
    /// Recordings kept only because of a legal hold, among those a rule picked.
    pub held_kept: u64,
    /// Recordings kept until they are replicated (`keep_until_replicated`).
    pub replica_kept: u64,
}

/// Reads (available, total) bytes of the recordings filesystem.
pub type SpaceFn<'a> = &'a dyn Fn() -> Option<(u64, u64)>;

const BATCH: usize = 256;

/// Runs one pass. `space` reads the filesystem (a closure so tests and the
/// benchmark can run without filling a disk).
pub fn run_pass(
    storage: &Storage,
    index: &mut Index,
    policy: &RetentionPolicy,
    now_ns: i64,
    space: SpaceFn<'_>,
    actor: &str,
) -> Result<PassReport, StorageError> {
    let mut rep = PassReport::default();
    let cameras = rows::cameras(index.conn()).map_err(crate::db::IndexError::from)?;
    let sql_err = |e: rusqlite::Error| StorageError::Index(e.into());

    // 1. Age.
    for (cam_id, name) in &cameras {
        let Some(days) = limits(policy, name).retention_days else {
            continue;
        };
        let cutoff = now_ns.saturating_sub(i64::from(days) * 86_400 * 1_000_000_000);
        let pick = Pick::EndedBy {
            camera_id: *cam_id,
            end_ns: cutoff,
        };
        loop {
            let ids = rows::oldest_deletable(index.conn(), pick, BATCH).map_err(sql_err)?;
            if ids.is_empty() {
                break;
            }
            let ids: Vec<i64> = ids.into_iter().map(|(id, _)| id).collect();
            let gone = storage.delete_unheld(index, &ids, "retention: age", now_ns)?;
            let n = gone.len();
            rep.deleted.extend(gone.into_iter().map(|r| (r, "age")));
            if n == 0 {
                break;
            }
        }
        rep.held_kept += rows::count_held(index.conn(), pick).map_err(sql_err)?;
        rep.replica_kept += rows::count_kept_for_replica(index.conn(), pick).map_err(sql_err)?;
    }

    // 2. Per-camera size.
    for (cam_id, name) in &cameras {
        let Some(max) = limits(policy, name).max_bytes else {
            continue;
        };
        for _ in 0..10_000 {
            let total = rows::camera_bytes(index.conn(), *cam_id).map_err(sql_err)?;
            let mut excess = total - max as i64;
            if excess <= 0 {
                break;
            }
            let cands = rows::oldest_deletable(index.conn(), Pick::Camera(*cam_id), BATCH).map_err(sql_err)?;
            let mut ids = Vec::new();
            for (id, bytes) in cands {
                if excess <= 0 {
                    break;
                }
                ids.push(id);
                excess -= bytes;
            }
            if ids.is_empty() {
                break;
            }
            let gone = storage.delete_unheld(index, &ids, "retention: max_bytes", now_ns)?;
            let n = gone.len();
            rep.deleted.extend(gone.into_iter().map(|r| (r, "max_bytes")));
            if n == 0 {
                break;
            }
        }
    }

    // 3. The storage floor, oldest first across cameras. Pruning starts when
    // free space comes within `headroom` of the floor and goes on until it is
    // two headrooms above it, so writes between passes never reach the floor.
    let mut pruning = false;
    for _ in 0..10_000 {
        let Some((avail, total)) = space() else { break };
        let (floor, head) = (policy.floor(total), policy.headroom(total));
        rep.space_after = Some((avail, floor));
        if !pruning && avail >= floor.saturating_add(head) {
            break;
        }
        pruning = true;
        let target = floor.saturating_add(2 * head).min(total);
        if avail >= target {
            break;
        }
        let mut need = (target - avail) as i64;
        let cands = rows::oldest_deletable(index.conn(), Pick::All, BATCH).map_err(sql_err)?;
        let mut ids = Vec::new();
        for (id, bytes) in cands {
            if need <= 0 {
                break;
            }
            ids.push(id);
            need -= bytes.max(1);
        }
        let gone = if ids.is_empty() {
            Vec::new()
        } else {
            storage.delete_unheld(index, &ids, "retention: free space", now_ns)?
        };
        if gone.is_empty() {
            rep.below_floor = avail < floor;
            rep.held_kept += rows::count_held(index.conn(), Pick::All).map_err(sql_err)?;
            rep.replica_kept += rows::count_kept_for_replica(index.conn(), Pick::All).map_err(sql_err)?;
            break;
        }
        rep.deleted.extend(gone.into_iter().map(|r| (r, "free space")));
    }
    if rep.space_after.is_some() {
        rep.space_after = space().map(|(a, t)| (a, policy.floor(t)));
    }
    rep.bytes_freed = rep.deleted.iter().map(|(r, _)| r.bytes.max(0) as u64).sum();
    audit_pass(index, &rep, actor);
    // The cameras' events go with the footage they pointed into (also after
    // an archive was deleted outside retention).
    if let Err(e) = crate::db::camera_events::prune(index.conn()) {
        tracing::warn!("pruning camera events failed: {e}");
    }
    Ok(rep)
}

/// The limits of the camera `name`. A recorded sub stream (`<camera>.sub`)
/// without limits of its own (`sub_retention_days`) keeps its camera's age
/// limit, and no size limit of its own (the camera's `max_bytes` is the
/// main stream's).
fn limits(policy: &RetentionPolicy, name: &str) -> crate::config::archive::CameraLimits {
    match crate::base::names::main_of_sub_stream(name) {
        Some(main) if !policy.cameras.contains_key(name) => crate::config::archive::CameraLimits {
            retention_days: policy.limits(main).retention_days,
            max_bytes: None,
        },
        _ => policy.limits(name),
    }
}

/// Compresses ids into runs: "1-4, 7, 9-21/4" (/4: every 4th id, as when
/// several cameras' recordings interleave).
fn id_ranges(ids: &mut [i64]) -> String {
    ids.sort_unstable();
    let mut out = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let step = ids.get(i + 1).map(|n| n - ids[i]).unwrap_or(1).max(1);
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + step {
            j += 1;
        }
        // Two ids with a step > 1 read better as "a, b".
        if step > 1 && j == i + 1 {
            j = i;
        }
        out.push(match (j - i, step) {
            (0, _) => ids[i].to_string(),
            (_, 1) => format!("{}-{}", ids[i], ids[j]),
            _ => format!("{}-{}/{step}", ids[i], ids[j]),
        });
        i = j + 1;
    }
    out.join(", ")
}

/// One audit entry per (rule, camera) with ids, time range and bytes.
fn audit_pass(index: &Index, rep: &PassReport, actor: &str) {
    let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&RecordingRow>> = Default::default();
    for (r, why) in &rep.deleted {
        groups.entry((why, r.camera.as_str())).or_default().push(r);
    }
    for ((why, camera), rows) in groups {
        let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let start = rows.iter().map(|r| r.start_wall_ns).min().unwrap_or(0);
        let end = rows.iter().map(|r| r.end_wall_ns()).max().unwrap_or(0);
        let bytes: i64 = rows.iter().map(|r| r.bytes).sum();
        let detail = format!(
            "rule {why}: {} recording(s), ids {}, {} to {}, {bytes} bytes",
            rows.len(),
            id_ranges(&mut ids),
            format_ns(start),
            format_ns(end)
        );
        if let Err(e) = crate::db::audit::append(
            index.conn(),
            actor,
            "retention.delete",
            camera,
            crate::db::audit::Outcome::Ok,
            &detail,
        ) {
            tracing::error!("cannot audit a retention pass ({detail}): {e}");
        }
    }
}

/// The daemon's retention thread: passes every `policy.interval`, every 2 s
/// while below the floor, at once when a recorder raises the alarm. Stops
/// when `stop` is set.
pub fn run_thread(
    storage: Storage,
    db_path: std::path::PathBuf,
    policy: RetentionPolicy,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut index = match Index::open(&db_path) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("retention cannot open the index, so nothing will be pruned: {e}");
            return;
        }
    };
    // A background connection: a small page cache is plenty.
    let _ = index.use_small_cache();
    let dir = storage.dir().to_path_buf();
    let space = move || crate::base::host::fs_space(&dir);
    let mut next_pass = std::time::Instant::now();
    let tick = Duration::from_secs(2);
    while !stop.load(Ordering::Relaxed) {
        let raised = storage.alarm().wait(tick);
        let now = std::time::Instant::now();
        let low = space().is_some_and(|(a, t)| a < policy.floor(t).saturating_add(policy.headroom(t)));
        if !(raised || low || now >= next_pass) {
            continue;
        }
        next_pass = now + policy.interval;
        let before = space();
        match run_pass(
            &storage,
            &mut index,
            &policy,
            crate::base::clock::now_ns(),
            &space,
            "retention",
        ) {
            Ok(rep) => {
                if !rep.deleted.is_empty() {
                    tracing::info!(
                        recordings = rep.deleted.len(),
                        bytes = rep.bytes_freed,
                        emergency = raised,
                        "retention deleted the oldest recordings"
                    );
                }
                space_alerts(&index, &policy, before, &rep);
                if rep.below_floor {
                    let (avail, floor) = rep.space_after.unwrap_or((0, 0));
                    let why = format!(
                        "storage below its free-space floor ({avail} bytes free, floor {floor}) and nothing more may be \
                         deleted ({} recording(s) under legal hold, {} waiting for off-box replication); recording \
                         resumes when space returns",
                        rep.held_kept, rep.replica_kept
                    );
                    if storage.alarm().paused().as_deref() != Some(why.as_str()) {
                        tracing::error!("{why}");
                    }
                    storage.alarm().set_paused(Some(why));
                } else if storage.alarm().paused().is_some() {
                    tracing::info!("free space is above the floor again");
                    storage.alarm().set_paused(None);
                }
            }
            Err(e) => {
                tracing::error!("retention pass failed (will retry): {e}");
                next_pass = now + tick;
            }
        }
    }
}

/// Raises or clears `disk.low` (free space reached the floor before the
/// pass, or the pass could not restore the headroom above it) and
/// `storage.paused` (below the floor with nothing left to delete).
fn space_alerts(index: &Index, policy: &RetentionPolicy, before: Option<(u64, u64)>, rep: &PassReport) {
    use crate::db::alerts::{set_now, Kind};
    let (Some((start, total)), Some((after, floor))) = (before, rep.space_after) else {
        return;
    };
    let mib = |b: u64| b / (1 << 20);
    let reached = policy.floor(total) > start;
    let low = (reached || after < floor.saturating_add(policy.headroom(total))).then(|| {
        format!(
            "Free space {} the floor of {} MiB ({} MiB free before retention's pass, {} MiB after; {} recording(s) \
             deleted, {} kept under legal hold, {} kept until replicated)",
            if reached { "fell below" } else { "stays near" },
            mib(floor),
            mib(start),
            mib(after),
            rep.deleted.len(),
            rep.held_kept,
            rep.replica_kept
        )
    });
    let paused = rep.below_floor.then(|| {
        format!(
            "Recording is paused: {} MiB free is below the floor of {} MiB and nothing more may be deleted \
             ({} recording(s) under legal hold, {} waiting for off-box replication)",
            mib(after),
            mib(floor),
            rep.held_kept,
            rep.replica_kept
        )
    });
    let now = crate::base::clock::now_ns();
    for (kind, problem) in [(Kind::DiskLow, low), (Kind::StoragePaused, paused)] {
        if let Err(e) = set_now(index.conn(), kind, "", problem.as_deref(), now) {
            tracing::warn!("cannot store the {} alert: {e}", kind.code());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::archive::CameraLimits;

    #[test]
    fn id_ranges_compress() {
        assert_eq!(id_ranges(&mut [9, 1, 2, 3, 7, 10, 11]), "1-3, 7, 9-11");
        assert_eq!(id_ranges(&mut [2, 6, 10, 14, 15]), "2-14/4, 15");
        assert_eq!(id_ranges(&mut [2, 6]), "2, 6");
        assert_eq!(id_ranges(&mut []), "");
    }

    /// An index with `n` finished one-minute recordings per camera (10 MB
    /// each, an empty file each), the oldest `n` minutes before `now`.
    fn archive(n: i64, now: i64) -> (tempfile::TempDir, Storage, Index) {
        let d = tempfile::tempdir().unwrap();
        let mut storage = Storage::new(&d.path().join("rec"));
        storage.ensure().unwrap();
        let index = Index::open(&d.path().join("v.db")).unwrap();
        let minute = 60_000_000_000i64;
        for cam in ["a", "b"] {
            let cid = index.camera_id(cam).unwrap();
            std::fs::create_dir_all(storage.dir().join(cam)).unwrap();
            for i in 0..n {
                let name = format!("{cam}/{i}.vseg");
                std::fs::write(storage.path_of(&name), b"x").unwrap();
                let start = now - (n - i) * minute;
                index
                    .conn()
                    .execute(
                        "INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, \
                         observed_wall_ns, timescale, start_pts, end_pts, bytes, end_wall_ns) \
                         VALUES (?1, ?2, x'00', x'00', 'h264', ?3, ?4, ?4, 1000000000, 0, ?5, 10000000, ?6)",
                        rusqlite::params![
                            cid,
                            name,
                            if i == n - 1 { "writing" } else { "complete" },
                            start,
                            minute,
                            start + minute
                        ],
                    )
                    .unwrap();
            }
        }
        (d, storage, index)
    }

    fn ids(index: &Index, cam: &str) -> Vec<i64> {
        index.recordings(Some(cam)).unwrap().iter().map(|r| r.id).collect()
    }

    #[test]
    fn age_size_and_floor_rules_delete_oldest_first_and_skip_holds_and_the_open_recording() {
        let now = 1_800_000_000_000_000_000i64;
        let day = 1440;
        // Three days of one-minute recordings per camera.
        let (_d, storage, mut index) = archive(3 * day, now);
        let all_a = ids(&index, "a");
        // Hold camera a's very first hour.
        let first = index.recordings(Some("a")).unwrap()[0].clone();
        crate::db::holds::place(
            index.conn(),
            &crate::db::holds::HoldTarget::Range {
                camera: "a".into(),
                start_ns: first.start_wall_ns,
                end_ns: first.start_wall_ns + 3_600_000_000_000,
            },
            "case",
            "t",
        )
        .unwrap();
        let plenty = || Some((1u64 << 40, 1u64 << 41));
        let mut policy = RetentionPolicy::default();
        policy.cameras.insert(
            "a".into(),
            CameraLimits {
                retention_days: Some(2),
                max_bytes: None,
            },
        );
        // b: at most 600 recordings' worth.
        policy.cameras.insert(
            "b".into(),
            CameraLimits {
                retention_days: None,
                max_bytes: Some(600 * 10_000_000),
            },
        );
        let rep = run_pass(&storage, &mut index, &policy, now, &plenty, "t").unwrap();
        let a = ids(&index, "a");
        let b = ids(&index, "b");
        // a: the first day is gone except the held hour (60 recordings).
        assert_eq!(a.len(), 2 * day as usize + 60, "{}", a.len());
        assert_eq!(a[..60], all_a[..60], "held hour kept");
        assert_eq!(a[60], all_a[day as usize], "then everything from day 2 on");
        assert_eq!(rep.held_kept, 60);
        // b: the newest 600, the open recording included.
        assert_eq!(b.len(), 600);
        assert!(index.recordings(Some("b")).unwrap().last().unwrap().state == "writing");
        // Files went with the rows; nothing is left in the garbage queue.
        assert!(!storage.path_of("a/100.vseg").exists() && storage.path_of("a/10.vseg").exists());
        assert!(index.garbage().unwrap().is_empty());

        // The floor: a disk 490 MB below a 10% floor, where each deleted
        // recording (one unlinked file) frees 10 MB.
        let total = 100_000_000_000u64;
        let base = total / 10 - 490_000_000;
        let files = || {
            ["a", "b"]
                .iter()
                .map(|c| std::fs::read_dir(storage.dir().join(c)).map(|d| d.count()).unwrap_or(0))
                .sum::<usize>() as u64
        };
        let before = files();
        let space_fs = || Some((base + (before - files()) * 10_000_000, total));
        let oldest_before: Vec<i64> = {
            let mut v: Vec<_> = index.recordings(None).unwrap();
            v.sort_by_key(|r| (r.start_wall_ns, r.id));
            v.iter().map(|r| r.id).collect()
        };
        let rep = run_pass(&storage, &mut index, &RetentionPolicy::default(), now, &space_fs, "t").unwrap();
        let (avail, floor) = rep.space_after.unwrap();
        assert!(
            avail >= floor + RetentionPolicy::default().headroom(total),
            "{avail} < {floor} + headroom"
        );
        assert!(!rep.below_floor);
        // Oldest first across cameras, skipping the held hour.
        let gone: std::collections::BTreeSet<i64> = rep.deleted.iter().map(|(r, _)| r.id).collect();
        let unheld: Vec<i64> = oldest_before
            .iter()
            .copied()
            .filter(|id| !a[..60].contains(id))
            .collect();
        assert!(
            unheld[..gone.len()].iter().all(|id| gone.contains(id)),
            "not the oldest first"
        );
    }

    #[test]
    fn a_sub_stream_keeps_its_own_age_limit_or_its_cameras() {
        let mut policy = RetentionPolicy {
            default_days: Some(30),
            ..RetentionPolicy::default()
        };
        let door = CameraLimits {
            retention_days: Some(14),
            max_bytes: Some(1 << 30),
        };
        policy.cameras.insert("door".into(), door);
        // No sub_retention_days: the camera's age limit, no size limit.
        let sub = limits(&policy, "door.sub");
        assert_eq!((sub.retention_days, sub.max_bytes), (Some(14), None));
        assert_eq!(
            limits(&policy, "yard.sub").retention_days,
            Some(30),
            "a camera with none: the default"
        );
        // sub_retention_days (config puts it under the sub stream's name).
        policy.cameras.insert(
            "door.sub".into(),
            CameraLimits {
                retention_days: Some(3),
                max_bytes: None,
            },
        );
        assert_eq!(limits(&policy, "door.sub").retention_days, Some(3));
        assert_eq!(limits(&policy, "door"), door, "the main stream's own");
    }

    #[test]
    fn floor_is_the_larger_of_percent_and_bytes() {
        let p = RetentionPolicy {
            min_free_percent: 10.0,
            min_free_bytes: 5_000,
            ..RetentionPolicy::default()
        };
        assert_eq!(p.floor(100_000), 10_000);
        assert_eq!(p.floor(10_000), 5_000);
        assert_eq!(p.floor(1_000), 1_000);
    }
}
