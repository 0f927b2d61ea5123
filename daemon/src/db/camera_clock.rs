//! Each camera's last measured clock drift (the `camera_clock` table: camera
//! minus this box, in ms, read over ONVIF or from RTCP sender reports), and
//! the `camera.clock_drift` alert it raises beyond [`DRIFT_ALERT_MS`] and
//! clears under it, in the same transaction.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::alerts::{self, Kind, Raise};
use crate::db::Index;

/// A drift beyond this (either way) raises `camera.clock_drift`.
pub const DRIFT_ALERT_MS: i64 = 2000;
/// An open drift alert clears only under this (a camera near the limit,
/// read to the second, would otherwise raise and clear it minute by minute).
pub const DRIFT_CLEAR_MS: i64 = 1500;

/// Where a drift was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Onvif,
    Rtcp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Onvif => "onvif",
            Source::Rtcp => "rtcp",
        }
    }

    fn parse(s: &str) -> Option<Source> {
        match s {
            "onvif" => Some(Source::Onvif),
            "rtcp" => Some(Source::Rtcp),
            _ => None,
        }
    }
}

/// A camera's last measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    pub drift_ms: i64,
    pub source: Source,
    pub measured_ns: i64,
}

/// The alert's sentence for a drift of `drift_ms`.
fn drift_message(camera: &str, drift_ms: i64) -> String {
    let way = if drift_ms > 0 { "ahead of" } else { "behind" };
    format!(
        "camera {camera}'s clock is {:.1} s {way} this box's (more than {} s): its recordings' times may be off; \
         run `vigil cameras sync-time {camera}` or point the camera at an NTP server",
        drift_ms.unsigned_abs() as f64 / 1000.0,
        DRIFT_ALERT_MS / 1000
    )
}

/// Stores `camera`'s drift and raises (|drift| > [`DRIFT_ALERT_MS`]) or
/// clears `camera.clock_drift`, in one transaction.
pub fn record(idx: &Index, camera: &str, drift_ms: i64, source: Source, now_ns: i64) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    record_in(&tx, camera, drift_ms, source, now_ns)?;
    tx.commit()
}

fn record_in(
    tx: &rusqlite::Connection,
    camera: &str,
    drift_ms: i64,
    source: Source,
    now_ns: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO camera_clock (camera, drift_ms, source, measured_ns) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(camera) DO UPDATE SET drift_ms = ?2, source = ?3, measured_ns = ?4",
        params![camera, drift_ms, source.as_str(), now_ns],
    )?;
    if drift_ms.abs() > DRIFT_ALERT_MS {
        let message = drift_message(camera, drift_ms);
        alerts::raise(tx, &Raise::camera(Kind::CameraClockDrift, camera, &message), now_ns)?;
    } else if drift_ms.abs() < DRIFT_CLEAR_MS {
        alerts::clear(tx, Kind::CameraClockDrift, camera, now_ns)?;
    }
    Ok(())
}

/// Audits a `vigil cameras sync-time` of `camera` as `camera.sync_time`
/// with its outcome and `detail` (what was set; the drift before and
/// after); when it succeeded, `drift_after_ms` is stored as the camera's
/// drift (source "onvif") in the same transaction, which clears or raises
/// the alert.
pub fn record_sync(
    idx: &Index,
    actor: &str,
    camera: &str,
    outcome: crate::db::audit::Outcome,
    detail: &str,
    drift_after_ms: Option<i64>,
    now_ns: i64,
) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    crate::db::audit::append(&tx, actor, "camera.sync_time", camera, outcome, detail)?;
    if let Some(d) = drift_after_ms {
        record_in(&tx, camera, d, Source::Onvif, now_ns)?;
    }
    tx.commit()
}

/// Forgets `camera`'s clock (the camera was removed): its reading goes and
/// its drift alert is cleared, in the caller's transaction.
pub fn forget(tx: &rusqlite::Connection, camera: &str, now_ns: i64) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM camera_clock WHERE camera = ?1", [camera])?;
    alerts::clear(tx, Kind::CameraClockDrift, camera, now_ns)?;
    Ok(())
}

/// `camera`'s last measurement, if any.
pub fn reading(idx: &Index, camera: &str) -> rusqlite::Result<Option<ClockReading>> {
    idx.conn()
        .query_row(
            "SELECT drift_ms, source, measured_ns FROM camera_clock WHERE camera = ?1",
            [camera],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
        )
        .optional()
        .map(|row| {
            row.and_then(|(drift_ms, source, measured_ns)| {
                Some(ClockReading {
                    drift_ms,
                    source: Source::parse(&source)?,
                    measured_ns,
                })
            })
        })
}

/// Every camera's last measurement, by name.
pub fn readings(idx: &Index) -> rusqlite::Result<Vec<(String, ClockReading)>> {
    let mut st = idx
        .conn()
        .prepare("SELECT camera, drift_ms, source, measured_ns FROM camera_clock ORDER BY camera")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (camera, drift_ms, source, measured_ns) = row?;
        if let Some(source) = Source::parse(&source) {
            out.push((
                camera,
                ClockReading {
                    drift_ms,
                    source,
                    measured_ns,
                },
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_drift(idx: &Index) -> Vec<String> {
        alerts::open(idx.conn())
            .unwrap()
            .into_iter()
            .filter(|a| a.code == "camera.clock_drift")
            .map(|a| a.subject)
            .collect()
    }

    #[test]
    fn a_drift_beyond_two_seconds_raises_the_alert_and_a_small_one_clears_it() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        assert_eq!(reading(&idx, "door").unwrap(), None);
        record(&idx, "door", 1500, Source::Onvif, 10).unwrap();
        assert!(open_drift(&idx).is_empty());
        record(&idx, "door", -4200, Source::Onvif, 20).unwrap();
        assert_eq!(open_drift(&idx), ["door"]);
        assert_eq!(
            reading(&idx, "door").unwrap(),
            Some(ClockReading {
                drift_ms: -4200,
                source: Source::Onvif,
                measured_ns: 20
            })
        );
        let a = alerts::open(idx.conn()).unwrap();
        assert!(a[0].message.contains("4.2 s behind"), "{}", a[0].message);
        record(&idx, "door", 200, Source::Rtcp, 30).unwrap();
        assert!(open_drift(&idx).is_empty());
        assert_eq!(readings(&idx).unwrap().len(), 1);
        assert_eq!(readings(&idx).unwrap()[0].1.source, Source::Rtcp);
    }
}
