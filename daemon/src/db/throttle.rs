//! Throttling of password and second-factor checks (login, password
//! change, TOTP enrolment): attempts reserved before anything is hashed,
//! failures counted per user and per client address (an IPv6 client's /64),
//! and refused attempts audited at a bounded rate per client network.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use crate::base::clock::Clocks;
use crate::base::network::{client_address, Network};

/// Throttling of password (and second-factor) checks: at most 5 failures
/// per user and 20 per client address in any minute; past that, every
/// attempt (right or wrong) is refused until the minute has passed.
///
/// An attempt is [reserved](Throttle::reserve) before anything is checked
/// and counts as a failure from then on, until it is settled as a success
/// or as no guess at all: so parallel attempts cannot all slip in before
/// the first failure is counted, and an attempt abandoned half-way stays
/// counted (fail closed). Times are the clock's monotonic milliseconds, so a
/// wall-clock step neither lifts nor extends a lockout.
pub struct Throttle {
    clock: Clocks,
    by_user: HashMap<String, VecDeque<Mark>>,
    by_ip: HashMap<IpAddr, VecDeque<Mark>>,
    next_id: u64,
    /// Refused attempts per client network ([`Throttle::refusal_to_audit`]).
    refusals: HashMap<Network, Refusals>,
}

/// Refused attempts of one client network in the current minute.
#[derive(Clone, Copy, Debug)]
struct Refusals {
    since_ms: i64,
    /// Audited one by one this minute.
    audited: u32,
    /// Refused without an entry of their own since the last audited one.
    quiet: u64,
}

/// Refused attempts audited one by one per client network and minute.
pub const REFUSALS_AUDITED: u32 = 20;

/// One attempt in the window.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at_ms: i64,
    id: u64,
    /// Checked and found wrong (else still being checked).
    settled: bool,
}

/// An attempt reserved by [`Throttle::reserve`]; settle it with
/// [`Throttle::failed`], [`Throttle::succeeded`] or [`Throttle::released`].
#[derive(Debug)]
#[must_use = "settle the attempt: failed, succeeded or released"]
pub struct Attempt {
    user: String,
    ip: IpAddr,
    id: u64,
}

pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_FAILURES_PER_USER: usize = 5;
pub const MAX_FAILURES_PER_IP: usize = 20;
const WINDOW_MS: i64 = WINDOW.as_millis() as i64;
/// Past this many users or addresses, entries whose window has passed are dropped.
const MAX_KEYS: usize = 10_000;

impl Throttle {
    pub fn new(clock: Clocks) -> Throttle {
        Throttle {
            clock,
            by_user: HashMap::new(),
            by_ip: HashMap::new(),
            next_id: 0,
            refusals: HashMap::new(),
        }
    }

    /// Whether a refused (throttled) attempt from `ip` gets its own audit
    /// entry: the first [`REFUSALS_AUDITED`] from a client network (an IPv4
    /// /24, an IPv6 /64) in a minute do, `Some(refusals not audited since
    /// the last entry)`; the rest are only counted and that count goes into
    /// the next entry, so a flood of refused logins cannot fill the disk
    /// with audit rows (nor wear the flash).
    pub fn refusal_to_audit(&mut self, ip: IpAddr) -> Option<u64> {
        let net = Network::of(ip);
        let now = self.clock.mono_ms();
        if self.refusals.len() > MAX_KEYS {
            self.refusals.retain(|_, r| now - r.since_ms <= WINDOW_MS);
        }
        let r = self.refusals.entry(net).or_insert(Refusals {
            since_ms: now,
            audited: 0,
            quiet: 0,
        });
        if now - r.since_ms >= WINDOW_MS {
            (r.since_ms, r.audited) = (now, 0);
        }
        if r.audited >= REFUSALS_AUDITED {
            r.quiet += 1;
            return None;
        }
        r.audited += 1;
        Some(std::mem::take(&mut r.quiet))
    }

    fn prune(q: &mut VecDeque<Mark>, now: i64) {
        while q.front().is_some_and(|m| now - m.at_ms > WINDOW_MS) {
            q.pop_front();
        }
    }

    /// Seconds to wait, if this user or address is locked out now.
    pub fn locked(&mut self, user: &str, ip: IpAddr) -> Option<u64> {
        let ip = client_address(ip);
        let now = self.clock.mono_ms();
        let mut wait = None;
        for (q, max) in [
            (self.by_user.get_mut(user), MAX_FAILURES_PER_USER),
            (self.by_ip.get_mut(&ip), MAX_FAILURES_PER_IP),
        ] {
            if let Some(q) = q {
                Self::prune(q, now);
                if q.len() >= max {
                    if let Some(first) = q.front() {
                        let left_ms = (WINDOW_MS - (now - first.at_ms)).max(0) as u64;
                        let left = Duration::from_millis(left_ms).as_secs() + 1;
                        wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                    }
                }
            }
        }
        wait
    }

    /// Reserves an attempt for `user` from `ip` before it is checked:
    /// `Err(seconds to wait)` when either is locked out; else the attempt,
    /// counted as a failure until it is settled otherwise.
    pub fn reserve(&mut self, user: &str, ip: IpAddr) -> Result<Attempt, u64> {
        let ip = client_address(ip);
        if let Some(wait) = self.locked(user, ip) {
            return Err(wait);
        }
        let now = self.clock.mono_ms();
        // Bounded memory: an address or name flood cannot grow these maps forever.
        if self.by_user.len() > MAX_KEYS {
            self.by_user
                .retain(|_, q| q.back().is_some_and(|m| now - m.at_ms <= WINDOW_MS));
        }
        if self.by_ip.len() > MAX_KEYS {
            self.by_ip
                .retain(|_, q| q.back().is_some_and(|m| now - m.at_ms <= WINDOW_MS));
        }
        self.next_id += 1;
        let mark = Mark {
            at_ms: now,
            id: self.next_id,
            settled: false,
        };
        self.by_user.entry(user.to_string()).or_default().push_back(mark);
        self.by_ip.entry(ip).or_default().push_back(mark);
        Ok(Attempt {
            user: user.to_string(),
            ip,
            id: mark.id,
        })
    }

    /// The attempt was wrong: it stays counted for the rest of the window.
    pub fn failed(&mut self, a: Attempt) {
        for q in [self.by_user.get_mut(&a.user), self.by_ip.get_mut(&a.ip)]
            .into_iter()
            .flatten()
        {
            if let Some(m) = q.iter_mut().find(|m| m.id == a.id) {
                m.settled = true;
            }
        }
    }

    /// A login succeeded: the user's settled failures are forgotten (not
    /// the attempts still being checked, nor the address's failures).
    pub fn succeeded(&mut self, a: Attempt) {
        if let Some(q) = self.by_user.get_mut(&a.user) {
            q.retain(|m| !m.settled && m.id != a.id);
        }
        self.forget(&a);
    }

    /// The attempt was right, or no guess (nothing to check): it is not
    /// counted; earlier failures stay.
    pub fn released(&mut self, a: Attempt) {
        self.forget(&a);
    }

    fn forget(&mut self, a: &Attempt) {
        if let Some(q) = self.by_user.get_mut(&a.user) {
            q.retain(|m| m.id != a.id);
        }
        if let Some(q) = self.by_ip.get_mut(&a.ip) {
            q.retain(|m| m.id != a.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;

    const T0: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn throttle_locks_the_sixth_attempt_for_a_minute() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert!(t.locked("a", ip).is_none());
            fail(&mut t, "a", ip);
            clock.advance_ms(1000);
        }
        // The first failure was 5 s ago: 55 s (and a bit) to wait.
        assert_eq!(t.locked("a", ip), Some(56));
        assert_eq!(t.reserve("a", ip).err(), Some(56), "refused before anything is checked");
        assert!(
            t.locked("b", ip).is_none(),
            "another user from the address is not locked yet"
        );
        clock.set_wall_ns(T0 + 3_600_000_000_000);
        assert_eq!(t.locked("a", ip), Some(56), "a wall-clock step changes nothing");
        clock.set_wall_ns(T0);
        clock.advance_ms(55 * 1000);
        assert_eq!(t.locked("a", ip), Some(1), "exactly a minute after the first failure");
        clock.advance_ms(1);
        assert!(t.locked("a", ip).is_none(), "the first failure has left the window");
        fail(&mut t, "a", ip);
        assert!(t.locked("a", ip).is_some(), "five failures in the last minute again");
        clock.advance_ms(5 * 1000);
        assert!(t.locked("a", ip).is_none());
    }

    #[test]
    fn throttle_locks_an_address_after_20_failures() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..20 {
            let user = format!("u{}", i % 5);
            assert!(t.locked(&user, ip).is_none(), "attempt {i}");
            fail(&mut t, &user, ip);
        }
        assert_eq!(t.locked("someone-else", ip), Some(61), "every name from that address");
        assert!(
            t.locked("someone-else", other).is_none(),
            "another address is not locked"
        );
        let right = t.reserve("u0", other).unwrap();
        t.succeeded(right);
        assert!(t.locked("u0", ip).is_some(), "a success does not clear the address");
        clock.advance_ms(60 * 1000 + 1);
        assert!(t.locked("someone-else", ip).is_none(), "after the minute");
    }

    #[test]
    fn an_ipv6_host_rotating_addresses_in_its_64_shares_one_budget() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        for i in 0..20u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            let user = format!("u{}", i % 5);
            assert!(t.locked(&user, ip).is_none(), "attempt {i}");
            fail(&mut t, &user, ip);
        }
        let fresh: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(
            t.locked("someone-else", fresh).is_some(),
            "a new address in the same /64"
        );
        let next: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(
            t.locked("someone-else", next).is_none(),
            "the next /64 is another client"
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_address(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_refusal_flood_is_audited_20_a_minute_per_network_and_counted_after() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        let audited: Vec<Option<u64>> = (0..1000u32)
            .map(|i| t.refusal_to_audit(IpAddr::from([10, 0, 0, (i % 250) as u8])))
            .collect();
        assert_eq!(audited.iter().flatten().count(), 20, "one /24: 20 entries");
        assert!(
            t.refusal_to_audit("10.0.1.1".parse().unwrap()).is_some(),
            "another network has its own"
        );
        clock.advance_ms(60 * 1000);
        assert_eq!(
            t.refusal_to_audit("10.0.0.7".parse().unwrap()),
            Some(980),
            "the next minute's first entry counts the quiet ones"
        );
    }

    #[test]
    fn a_success_clears_only_that_users_failures() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..4 {
            fail(&mut t, "a", ip);
            fail(&mut t, "b", ip2);
        }
        let a = t.reserve("a", ip).unwrap();
        let b = t.reserve("b", ip2).unwrap();
        t.failed(b);
        assert!(t.locked("a", ip).is_some() && t.locked("b", ip2).is_some());
        t.succeeded(a);
        assert!(t.locked("a", ip).is_none(), "a's failures are forgotten");
        assert!(t.locked("b", ip2).is_some(), "b's are not");
    }

    /// One wrong attempt, reserved and settled.
    fn fail(t: &mut Throttle, user: &str, ip: IpAddr) {
        let a = t.reserve(user, ip).unwrap();
        t.failed(a);
    }

    /// The race of issue 14: parallel guesses all checked before the first
    /// failure was counted. Reserved before the check, only 5 get through.
    #[test]
    fn parallel_attempts_are_reserved_before_they_are_checked() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let results: Vec<_> = (0..20).map(|_| t.reserve("admin", ip)).collect();
        let admitted: Vec<Attempt> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(admitted.len(), MAX_FAILURES_PER_USER, "the rest wait (429)");
        // One of the five in flight is right: the others, still being
        // checked, stay counted.
        let mut admitted = admitted.into_iter();
        let right = admitted.next().unwrap();
        t.succeeded(right);
        assert!(t.locked("admin", ip).is_none(), "the success freed one place");
        let late = t.reserve("admin", ip).unwrap();
        assert!(
            t.reserve("admin", ip).is_err(),
            "four in flight and one new: full again"
        );
        for a in admitted {
            t.failed(a);
        }
        t.released(late);
        assert!(t.locked("admin", ip).is_none(), "a released attempt does not count");
        fail(&mut t, "admin", ip);
        assert!(t.locked("admin", ip).is_some(), "four failures and a fifth");
    }

    #[test]
    fn an_abandoned_attempt_counts_until_the_window_passes() {
        let clock = ManualClock::new(T0);
        let mut t = Throttle::new(clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..5 {
            // Reserved, never settled (the client went away mid-check).
            std::mem::forget(t.reserve("v", ip).unwrap());
        }
        assert!(t.reserve("v", ip).is_err(), "fail closed");
        clock.advance_ms(60 * 1000 + 1);
        assert!(t.reserve("v", ip).is_ok());
    }
}
