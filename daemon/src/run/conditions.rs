//! Conditions that nothing else notices as they change, polled once a
//! minute by the health supervisor and kept as alerts: the clock's NTP
//! synchronisation, secrets within 14 days of, or past, their expiry, and
//! the camera alerts of cameras no longer run (cleared).

use rusqlite::Connection;

use crate::db::alerts::{clear, raise, Kind, Raise};

/// One poll: raises or clears `clock.unsynchronised`, `secret.expiring` and
/// `secret.expired`, in one transaction.
pub fn poll(conn: &Connection, now_ns: i64) -> rusqlite::Result<()> {
    let ts = crate::base::host::time_sync();
    let secrets = crate::keys::secrets::list_in(conn)?;
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    if ts.synchronised {
        clear(&tx, Kind::ClockUnsynchronised, "", now_ns)?;
    } else {
        raise(
            &tx,
            &Raise::new(
                Kind::ClockUnsynchronised,
                "",
                "The system clock is not synchronised by NTP: recording times and evidence timestamps may be wrong; \
                 check the time server (timedatectl timesync-status)",
            ),
            now_ns,
        )?;
    }
    for s in &secrets {
        let state = s.expiry_state(now_ns);
        let when = s.expires_ns.map(crate::base::time::format_ns).unwrap_or_default();
        let (expiring, expired) = match state {
            "EXPIRED" => (
                None,
                Some(format!(
                    "Secret {} expired at {when}; renew it: `vigil secrets rotate {}`",
                    s.name, s.name
                )),
            ),
            "" => (None, None),
            _ => (
                Some(format!(
                    "Secret {} expires at {when}; renew it: `vigil secrets rotate {}`",
                    s.name, s.name
                )),
                None,
            ),
        };
        for (kind, problem) in [(Kind::SecretExpiring, expiring), (Kind::SecretExpired, expired)] {
            match problem {
                Some(m) => {
                    raise(&tx, &Raise::new(kind, &s.name, &m), now_ns)?;
                }
                None => {
                    clear(&tx, kind, &s.name, now_ns)?;
                }
            }
        }
    }
    // Cameras removed or disabled for two minutes have no open problem.
    crate::db::alerts::clear_stopped_cameras(&tx, now_ns - 120 * 1_000_000_000, now_ns)?;
    // Alerts about secrets that are gone.
    for a in crate::db::alerts::open(&tx)? {
        if (a.code == Kind::SecretExpiring.code() || a.code == Kind::SecretExpired.code())
            && !secrets.iter().any(|s| s.name == a.subject)
        {
            if let Some(k) = Kind::of_code(&a.code) {
                clear(&tx, k, &a.subject, now_ns)?;
            }
        }
    }
    tx.commit()
}
