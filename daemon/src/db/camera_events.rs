//! The cameras' own events (ONVIF motion and tamper, pulled by
//! `run::camera_events`): one row per event, from the camera's "true" to
//! its "false" (an end still open while the condition lasts). Times are the
//! box's wall clock in ns: the camera's timestamps corrected by its
//! measured drift, so that they land on the recordings' timeline. Events
//! are kept as long as the footage they point into ([`prune`]).

use rusqlite::{params, Connection, OptionalExtension};

/// What a camera reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Motion,
    Tamper,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Motion => "motion",
            EventKind::Tamper => "tamper",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        match s {
            "motion" => Some(EventKind::Motion),
            "tamper" => Some(EventKind::Tamper),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraEvent {
    pub id: i64,
    pub camera: String,
    pub kind: EventKind,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub topic: String,
}

/// The most rows one listing returns.
pub const MAX_LISTED: usize = 5000;
/// An event left open longer than this (a lost "false") is closed at its
/// start plus this when the next one of its kind begins.
const LONGEST_OPEN_NS: i64 = 3_600_000_000_000;

/// Records that `camera` reported `kind` becoming `state` at `at_ns`. A
/// "true" while one is open is the same event (cameras repeat their
/// state); a "false" closes the open one, and is dropped when none is open
/// (its start was before the subscription). Returns the event's id.
pub fn record(
    conn: &Connection,
    camera: &str,
    kind: EventKind,
    state: bool,
    at_ns: i64,
    topic: &str,
) -> rusqlite::Result<Option<i64>> {
    let open: Option<(i64, i64)> = conn
        .query_row(
            "SELECT id, start_ns FROM camera_event WHERE camera = ?1 AND kind = ?2 AND end_ns IS NULL \
             ORDER BY start_ns DESC LIMIT 1",
            params![camera, kind.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match (open, state) {
        (Some((id, _)), false) => {
            conn.execute(
                "UPDATE camera_event SET end_ns = MAX(start_ns, ?2) WHERE id = ?1",
                params![id, at_ns],
            )?;
            Ok(Some(id))
        }
        (None, false) => Ok(None),
        (Some((id, start)), true) if at_ns - start < LONGEST_OPEN_NS => Ok(Some(id)),
        (open, true) => {
            if let Some((id, start)) = open {
                conn.execute(
                    "UPDATE camera_event SET end_ns = ?2 WHERE id = ?1",
                    params![id, start + LONGEST_OPEN_NS],
                )?;
            }
            conn.execute(
                "INSERT INTO camera_event (camera, kind, start_ns, end_ns, topic) VALUES (?1, ?2, ?3, NULL, ?4)",
                params![camera, kind.as_str(), at_ns, topic],
            )?;
            Ok(Some(conn.last_insert_rowid()))
        }
    }
}

/// Events of `cameras` (None: all) that overlap `[start_ns, end_ns)` (one
/// still open overlaps everything after its start), oldest first, at most
/// [`MAX_LISTED`]; and whether more were left out.
pub fn list(
    conn: &Connection,
    cameras: Option<&[String]>,
    start_ns: i64,
    end_ns: i64,
) -> rusqlite::Result<(Vec<CameraEvent>, bool)> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(CameraEvent {
            id: r.get(0)?,
            camera: r.get(1)?,
            kind: EventKind::parse(&r.get::<_, String>(2)?).unwrap_or(EventKind::Motion),
            start_ns: r.get(3)?,
            end_ns: r.get(4)?,
            topic: r.get(5)?,
        })
    };
    let limit = MAX_LISTED as i64 + 1;
    let mut out = Vec::new();
    match cameras {
        None => {
            let mut st = conn.prepare_cached(
                "SELECT id, camera, kind, start_ns, end_ns, topic FROM camera_event \
                 WHERE start_ns < ?2 AND (end_ns IS NULL OR end_ns >= ?1) ORDER BY start_ns, id LIMIT ?3",
            )?;
            for e in st.query_map(params![start_ns, end_ns, limit], row)? {
                out.push(e?);
            }
        }
        // The caller's cameras, each through the index (never another camera's rows in a shared limit).
        Some(set) => {
            let mut st = conn.prepare_cached(
                "SELECT id, camera, kind, start_ns, end_ns, topic FROM camera_event \
                 WHERE camera = ?4 AND start_ns < ?2 AND (end_ns IS NULL OR end_ns >= ?1) \
                 ORDER BY start_ns, id LIMIT ?3",
            )?;
            for cam in set {
                for e in st.query_map(params![start_ns, end_ns, limit, cam], row)? {
                    out.push(e?);
                }
            }
            out.sort_by_key(|e| (e.start_ns, e.id));
        }
    }
    let cut = out.len() > MAX_LISTED;
    out.truncate(MAX_LISTED);
    Ok((out, cut))
}

/// Closes `camera`'s open events at `at_ns` (their "false" may have been
/// missed: a restart, a new subscription). Returns how many.
pub fn close_open(conn: &Connection, camera: &str, at_ns: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE camera_event SET end_ns = MAX(start_ns, ?2) WHERE camera = ?1 AND end_ns IS NULL",
        params![camera, at_ns],
    )
}

/// Deletes the events that ended before the oldest recording kept of their
/// camera (the footage they pointed into is gone). Events still open, and
/// cameras with no recording (recording may not have begun), keep theirs.
/// Returns how many went.
pub fn prune(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM camera_event WHERE end_ns IS NOT NULL AND end_ns < \
         (SELECT MIN(r.start_wall_ns) FROM recording r JOIN camera c ON c.id = r.camera_id \
          WHERE c.name = camera_event.camera)",
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Index) {
        let d = tempfile::tempdir().unwrap();
        let idx = crate::db::Index::open(&d.path().join("i.db")).unwrap();
        (d, idx)
    }

    #[test]
    fn true_then_false_is_one_event_and_repeats_are_merged() {
        let (_d, idx) = db();
        let c = idx.conn();
        let t = "tns1:RuleEngine/CellMotionDetector/Motion";
        let id = record(c, "front", EventKind::Motion, true, 1_000, t).unwrap().unwrap();
        assert_eq!(record(c, "front", EventKind::Motion, true, 2_000, t).unwrap(), Some(id));
        assert_eq!(
            record(c, "front", EventKind::Motion, false, 5_000, t).unwrap(),
            Some(id)
        );
        // A "false" with nothing open is dropped; other cameras and kinds are apart.
        assert_eq!(record(c, "front", EventKind::Motion, false, 6_000, t).unwrap(), None);
        let tamper = record(c, "front", EventKind::Tamper, true, 7_000, "x")
            .unwrap()
            .unwrap();
        let yard = record(c, "yard", EventKind::Motion, true, 8_000, t).unwrap().unwrap();
        let all = list(c, None, 0, 10_000).unwrap().0;
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].id, all[0].start_ns, all[0].end_ns), (id, 1_000, Some(5_000)));
        assert_eq!((all[1].id, all[1].end_ns), (tamper, None));
        let only_yard = list(c, Some(&["yard".to_string()]), 0, 10_000).unwrap().0;
        assert_eq!(only_yard.iter().map(|e| e.id).collect::<Vec<_>>(), vec![yard]);
        // Overlap: an event that began before the range and ends inside it is listed.
        assert_eq!(list(c, None, 4_000, 4_500).unwrap().0[0].id, id);
        assert!(list(c, None, 5_001, 6_999).unwrap().0.is_empty());
        // Still going on: listed in a range after its start.
        assert_eq!(
            list(c, None, 9_500, 9_600)
                .unwrap()
                .0
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            vec![tamper, yard]
        );
        // A new subscription closes what was left open.
        assert_eq!(close_open(c, "front", 9_000).unwrap(), 1);
        assert_eq!(
            list(c, None, 9_500, 9_600)
                .unwrap()
                .0
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            vec![yard]
        );
    }

    #[test]
    fn a_lost_false_does_not_hold_an_event_open_for_ever() {
        let (_d, idx) = db();
        let c = idx.conn();
        let first = record(c, "front", EventKind::Motion, true, 0, "m").unwrap().unwrap();
        let later = LONGEST_OPEN_NS + 5;
        let second = record(c, "front", EventKind::Motion, true, later, "m")
            .unwrap()
            .unwrap();
        assert_ne!(first, second);
        let all = list(c, None, 0, later + 1).unwrap().0;
        assert_eq!(all[0].end_ns, Some(LONGEST_OPEN_NS));
        assert_eq!(all[1].end_ns, None);
    }

    #[test]
    fn events_go_with_the_footage_they_point_into() {
        let (_d, idx) = db();
        let c = idx.conn();
        let cam = idx.camera_id("front").unwrap();
        let id = idx
            .insert_recording(&crate::db::NewRecording {
                camera_id: cam,
                file_name: "front/1.vseg",
                file_id: &[1; 16],
                key_id: &[0; 8],
                codec: "h264",
                start_wall_ns: 10_000,
                observed_wall_ns: 10_000,
                timescale: 1_000_000_000,
                start_pts: 0,
                bytes: 10,
                gap_alert_after_ns: None,
                continues_previous: false,
            })
            .unwrap();
        assert!(id > 0);
        let old = record(c, "front", EventKind::Motion, true, 1_000, "m")
            .unwrap()
            .unwrap();
        record(c, "front", EventKind::Motion, false, 2_000, "m").unwrap();
        let straddling = record(c, "front", EventKind::Motion, true, 9_000, "m")
            .unwrap()
            .unwrap();
        record(c, "front", EventKind::Motion, false, 11_000, "m").unwrap();
        let open = record(c, "front", EventKind::Tamper, true, 5_000, "t")
            .unwrap()
            .unwrap();
        // A camera with no recording keeps its events.
        let other = record(c, "yard", EventKind::Motion, true, 1, "m").unwrap().unwrap();
        assert_eq!(prune(c).unwrap(), 1);
        let left: Vec<i64> = list(c, None, 0, 100_000).unwrap().0.iter().map(|e| e.id).collect();
        assert!(!left.contains(&old), "{left:?}");
        // The straddling one still shows footage; an open one is still going on.
        assert_eq!(left, vec![other, open, straddling]);
    }
}
