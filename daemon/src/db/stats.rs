//! Figures the dashboard and the timeline read from the index: each
//! camera's recorded spans in a window (recordings merged across gaps under
//! a second), the bytes recorded per UTC day, the newest recording of each
//! camera (codec, frame rate, bit rate), and the archive's size and oldest
//! recording. The dashboard reads these on every refresh, so none of them
//! reads every recording when the index can do better: presence is an
//! EXISTS, the daily mean reads the last week only. The storage figures
//! take an optional camera set (a caller limited to some cameras sees
//! theirs only).

use rusqlite::{params, Connection};

/// Recordings closer than this are one span on the timeline.
pub const MERGE_GAP_NS: i64 = 1_000_000_000;
/// At most this many spans per camera in one answer.
pub const MAX_SPANS: usize = 20_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// One camera's row of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraSpans {
    pub camera: String,
    /// The codec of the camera's newest recording.
    pub codec: Option<String>,
    /// (start, end) in ns since the epoch, clipped to the window, in order.
    pub spans: Vec<(i64, i64)>,
    /// More spans than [`MAX_SPANS`] were in the window.
    pub truncated: bool,
}

/// The spans of every camera that recorded in `[start_ns, end_ns)`, by
/// camera name.
pub fn timeline(conn: &Connection, start_ns: i64, end_ns: i64) -> rusqlite::Result<Vec<CameraSpans>> {
    let mut st = conn.prepare_cached(
        "SELECT c.name, r.start_wall_ns, r.end_wall_ns FROM recording r JOIN camera c ON c.id = r.camera_id \
         WHERE r.start_wall_ns < ?2 AND r.end_wall_ns > ?1 ORDER BY c.name, r.start_wall_ns, r.id",
    )?;
    let mut rows = st.query(params![start_ns, end_ns])?;
    let mut out: Vec<CameraSpans> = Vec::new();
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let (s, e) = (r.get::<_, i64>(1)?.max(start_ns), r.get::<_, i64>(2)?.min(end_ns));
        if out.last().is_none_or(|c| c.camera != name) {
            out.push(CameraSpans {
                camera: name,
                codec: None,
                spans: Vec::new(),
                truncated: false,
            });
        }
        let Some(cam) = out.last_mut() else { continue };
        merge_span(cam, s, e);
    }
    for cam in &mut out {
        cam.codec = newest_codec(conn, &cam.camera)?;
    }
    Ok(out)
}

/// Adds `[s, e)` to the camera's spans (in start order), merging it into
/// the last span when the gap is under [`MERGE_GAP_NS`].
fn merge_span(cam: &mut CameraSpans, s: i64, e: i64) {
    if let Some(last) = cam.spans.last_mut() {
        if s - last.1 < MERGE_GAP_NS {
            last.1 = last.1.max(e);
            return;
        }
    }
    if cam.spans.len() >= MAX_SPANS {
        cam.truncated = true;
        return;
    }
    cam.spans.push((s, e));
}

fn newest_codec(conn: &Connection, camera: &str) -> rusqlite::Result<Option<String>> {
    let mut st = conn.prepare_cached(
        "SELECT r.codec FROM recording r JOIN camera c ON c.id = r.camera_id WHERE c.name = ?1 \
         ORDER BY r.start_wall_ns DESC, r.id DESC LIMIT 1",
    )?;
    let mut rows = st.query([camera])?;
    match rows.next()? {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

/// A camera's newest recording, as the camera list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LastRecording {
    pub camera: String,
    pub codec: String,
    pub end_ns: i64,
    /// Frames per second over the recording.
    pub fps: f64,
    /// Bits per second over the recording (file bytes).
    pub bitrate_bps: i64,
}

/// The newest recording of each camera that has one (with some duration).
pub fn last_recordings(conn: &Connection) -> rusqlite::Result<Vec<LastRecording>> {
    let mut st = conn.prepare_cached(
        "SELECT c.name, r.codec, r.start_wall_ns, r.end_wall_ns, r.frames, r.bytes FROM camera c \
         JOIN recording r ON r.id = (SELECT id FROM recording WHERE camera_id = c.id AND end_wall_ns > start_wall_ns \
                                     ORDER BY start_wall_ns DESC, id DESC LIMIT 1) ORDER BY c.name",
    )?;
    let rows = st.query_map([], |r| {
        let (start, end, frames, bytes): (i64, i64, i64, i64) = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        let secs = (end - start) as f64 / 1e9;
        Ok(LastRecording {
            camera: r.get(0)?,
            codec: r.get(1)?,
            end_ns: end,
            fps: (frames as f64 / secs * 100.0).round() / 100.0,
            bitrate_bps: (bytes as f64 * 8.0 / secs).round() as i64,
        })
    })?;
    rows.collect()
}

/// The names of the cameras that have at least one recording.
pub fn cameras_with_recordings(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT c.name FROM camera c WHERE EXISTS (SELECT 1 FROM recording r WHERE r.camera_id = c.id) \
         ORDER BY c.name",
    )?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// A camera set as an SQL parameter: NULL for every camera, else a JSON
/// array of names (read with `json_each` by [`in_set`]).
fn set_param(only: Option<&[String]>) -> Option<String> {
    only.map(|names| serde_json::Value::from(names.to_vec()).to_string())
}

/// The condition "the recording's camera is in the set given as parameter
/// `p`" (`?3`; see [`set_param`]).
fn in_set(p: &str) -> String {
    format!("({p} IS NULL OR camera_id IN (SELECT c.id FROM camera c JOIN json_each({p}) j ON c.name = j.value))")
}

/// The UTC day (days since the epoch) of a time in ns.
pub fn day_of(ns: i64) -> i64 {
    ns.div_euclid(DAY_NS)
}

/// Bytes recorded per UTC day (by each recording's start) for the `days`
/// days that end with the day of `now_ns`, oldest first; days without
/// recordings are 0. Only the cameras in `only` when given.
pub fn bytes_per_day(
    conn: &Connection,
    now_ns: i64,
    days: i64,
    only: Option<&[String]>,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let today = day_of(now_ns);
    let first = today - days + 1;
    let mut st = conn.prepare_cached(&format!(
        "SELECT start_wall_ns / ?1 AS day, sum(bytes) FROM recording WHERE start_wall_ns >= ?2 AND {} \
         GROUP BY day ORDER BY day",
        in_set("?3")
    ))?;
    let found: Vec<(i64, i64)> = st
        .query_map(params![DAY_NS, first * DAY_NS, set_param(only)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok((first..=today)
        .map(|d| (d, found.iter().find(|(fd, _)| *fd == d).map_or(0, |(_, b)| *b)))
        .collect())
}

/// The full UTC days before today that [`mean_daily_bytes`] reads.
const MEAN_DAYS: i64 = 7;

/// The mean bytes per day over those of the last 7 full UTC days before
/// the day of `now_ns` that have recordings (of the cameras in `only` when
/// given); None when there is none. Reads that week only (the index on
/// start time), not the whole archive.
pub fn mean_daily_bytes(conn: &Connection, now_ns: i64, only: Option<&[String]>) -> rusqlite::Result<Option<f64>> {
    let today = day_of(now_ns);
    let mut st = conn.prepare_cached(&format!(
        "SELECT start_wall_ns / ?1 AS day, sum(bytes) FROM recording \
         WHERE start_wall_ns >= ?4 AND start_wall_ns < ?2 AND {} \
         GROUP BY day HAVING sum(bytes) > 0",
        in_set("?3")
    ))?;
    let bound = (today - MEAN_DAYS).max(0) * DAY_NS;
    let days: Vec<i64> = st
        .query_map(params![DAY_NS, today * DAY_NS, set_param(only), bound], |r| r.get(1))?
        .collect::<Result<_, _>>()?;
    if days.is_empty() {
        return Ok(None);
    }
    Ok(Some(days.iter().sum::<i64>() as f64 / days.len() as f64))
}

/// (bytes of every recording, start of the oldest), of the cameras in
/// `only` when given.
pub fn archive_size(conn: &Connection, only: Option<&[String]>) -> rusqlite::Result<(i64, Option<i64>)> {
    conn.query_row(
        &format!(
            "SELECT coalesce(sum(bytes), 0), min(start_wall_ns) FROM recording WHERE {}",
            in_set("?1")
        ),
        [set_param(only)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Days the archive would reach if it grew into the free space above the
/// floor at `mean_daily` bytes a day: (recordings + free - floor) / mean.
pub fn retained_days_estimate(recordings: u64, free: u64, floor: u64, mean_daily: Option<f64>) -> Option<f64> {
    let mean = mean_daily.filter(|m| *m > 0.0)?;
    let room = (recordings + free).saturating_sub(floor) as f64;
    Some((room / mean * 10.0).round() / 10.0)
}

/// The cameras the daemon runs (any state but "stopped") and whether each
/// is streaming, by name: what MQTT publishes as retained states.
pub fn camera_states(conn: &Connection) -> rusqlite::Result<Vec<(String, bool)>> {
    let mut st =
        conn.prepare_cached("SELECT name, state = 'streaming' FROM camera WHERE state != 'stopped' ORDER BY name")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Index;

    const T0: i64 = 1_700_006_400 * 1_000_000_000; // 2023-11-15T00:00:00Z
    const S: i64 = 1_000_000_000;

    fn index_with(rows: &[(&str, i64, i64, i64)]) -> (tempfile::TempDir, Index) {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        for (i, (cam, start, end, bytes)) in rows.iter().enumerate() {
            let cam_id = idx.camera_id(cam).unwrap();
            idx.conn()
                .execute(
                    "INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, \
                     observed_wall_ns, timescale, start_pts, end_pts, frames, chunks, bytes, end_wall_ns) \
                     VALUES (?1, ?2, x'00', x'00', 'h264', 'complete', ?3, ?3, 90000, 0, 0, 250, 1, ?4, ?5)",
                    params![cam_id, format!("f{i}"), start, bytes, end],
                )
                .unwrap();
        }
        (d, idx)
    }

    #[test]
    fn spans_merge_across_gaps_under_a_second() {
        let (_d, idx) = index_with(&[
            ("front", T0, T0 + 60 * S, 1),
            ("front", T0 + 60 * S + S / 2, T0 + 120 * S, 1),
            ("front", T0 + 122 * S, T0 + 180 * S, 1),
            ("yard", T0 - 10 * S, T0 + 10 * S, 1),
        ]);
        let t = timeline(idx.conn(), T0, T0 + 3600 * S).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].camera, "front");
        assert_eq!(t[0].codec.as_deref(), Some("h264"));
        assert_eq!(t[0].spans, [(T0, T0 + 120 * S), (T0 + 122 * S, T0 + 180 * S)]);
        assert_eq!(t[1].spans, [(T0, T0 + 10 * S)], "clipped to the window");
        assert!(!t[0].truncated);
        assert!(timeline(idx.conn(), T0 + 3600 * S, T0 + 7200 * S).unwrap().is_empty());
    }

    #[test]
    fn spans_stop_at_the_limit() {
        let mut cam = CameraSpans {
            camera: "c".into(),
            codec: None,
            spans: Vec::new(),
            truncated: false,
        };
        for i in 0..(MAX_SPANS as i64 + 5) {
            merge_span(&mut cam, i * 10 * S, i * 10 * S + S);
        }
        assert_eq!(cam.spans.len(), MAX_SPANS);
        assert!(cam.truncated);
    }

    #[test]
    fn bytes_per_utc_day_and_the_estimate() {
        let day = 86_400 * S;
        let (_d, idx) = index_with(&[
            ("front", T0 - 2 * day, T0 - 2 * day + 60 * S, 1000),
            ("front", T0 - day + 5, T0 - day + 60 * S, 3000),
            ("yard", T0 - day + 100 * S, T0 - day + 160 * S, 1000),
            ("front", T0 + 10 * S, T0 + 70 * S, 500),
        ]);
        let now = T0 + 3600 * S;
        let days = bytes_per_day(idx.conn(), now, 14, None).unwrap();
        assert_eq!(days.len(), 14);
        assert_eq!(days[13], (day_of(T0), 500), "today last");
        assert_eq!(days[12], (day_of(T0) - 1, 4000));
        assert_eq!(days[11], (day_of(T0) - 2, 1000));
        assert_eq!(days[0].1, 0);
        // Full days only: today's 500 does not count.
        assert_eq!(mean_daily_bytes(idx.conn(), now, None).unwrap(), Some(2500.0));
        assert_eq!(archive_size(idx.conn(), None).unwrap(), (5500, Some(T0 - 2 * day)));
        assert_eq!(retained_days_estimate(5500, 10_000, 500, Some(2500.0)), Some(6.0));
        assert_eq!(retained_days_estimate(5500, 10_000, 500, None), None);
        let (_d2, empty) = index_with(&[("front", T0 + S, T0 + 2 * S, 10)]);
        assert_eq!(
            mean_daily_bytes(empty.conn(), now, None).unwrap(),
            None,
            "no full day yet"
        );
        let last = last_recordings(idx.conn()).unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!(last[0].camera, "front");
        assert_eq!(last[0].end_ns, T0 + 70 * S);
        assert_eq!(last[0].bitrate_bps, 67, "500 bytes in 60 s");
        assert!((last[0].fps - 250.0 / 60.0).abs() < 0.01);
    }

    #[test]
    fn the_mean_reads_the_last_week_only() {
        let day = 86_400 * S;
        let (_d, idx) = index_with(&[
            ("front", T0 - 30 * day, T0 - 30 * day + 60 * S, 1_000_000),
            ("front", T0 - 8 * day, T0 - 8 * day + 60 * S, 1_000_000),
            ("front", T0 - 7 * day, T0 - 7 * day + 60 * S, 2000),
            ("front", T0 - day, T0 - day + 60 * S, 4000),
        ]);
        let now = T0 + 3600 * S;
        assert_eq!(mean_daily_bytes(idx.conn(), now, None).unwrap(), Some(3000.0));
        let (_d2, old) = index_with(&[("front", T0 - 9 * day, T0 - 9 * day + 60 * S, 10)]);
        assert_eq!(
            mean_daily_bytes(old.conn(), now, None).unwrap(),
            None,
            "nothing this week"
        );
        let plan: Vec<String> = idx
            .conn()
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT start_wall_ns / ?1 AS day, sum(bytes) FROM recording \
                 WHERE start_wall_ns >= ?4 AND start_wall_ns < ?2 AND {} GROUP BY day",
                in_set("?3")
            ))
            .unwrap()
            .query_map(params![DAY_NS, now, None::<String>, 0], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("recording_start")), "{plan:?}");
    }

    #[test]
    fn a_camera_set_limits_the_storage_figures_and_presence_is_an_exists() {
        let day = 86_400 * S;
        let (_d, idx) = index_with(&[
            ("front", T0 - 2 * day, T0 - 2 * day + 60 * S, 1000),
            ("yard", T0 - day, T0 - day + 60 * S, 3000),
            ("yard", T0 + 10 * S, T0 + 70 * S, 500),
        ]);
        idx.camera_id("empty").unwrap();
        let now = T0 + 3600 * S;
        let yard = ["yard".to_string()];
        let only = Some(&yard[..]);
        assert_eq!(archive_size(idx.conn(), only).unwrap(), (3500, Some(T0 - day)));
        assert_eq!(archive_size(idx.conn(), Some(&[])).unwrap(), (0, None));
        let days = bytes_per_day(idx.conn(), now, 14, only).unwrap();
        assert_eq!((days[11].1, days[12].1, days[13].1), (0, 3000, 500));
        assert_eq!(mean_daily_bytes(idx.conn(), now, only).unwrap(), Some(3000.0));
        assert_eq!(mean_daily_bytes(idx.conn(), now, None).unwrap(), Some(2000.0));
        assert_eq!(cameras_with_recordings(idx.conn()).unwrap(), ["front", "yard"]);
    }
}
