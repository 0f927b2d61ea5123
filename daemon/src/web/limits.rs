//! Who may hold a connection, and for how long: the caps (per client
//! address, per /24 or /64 network, in all), the per-connection activity
//! record ([`ConnStats`]: what the connection is doing and since when), and
//! the choice of which connection to shed when a cap is reached. A newcomer
//! over its own address's cap is refused; over its network's cap or the
//! global cap it takes the place of the connection of that network (or of
//! all) that has been waiting on its client longest: a TLS handshake, a
//! request head or body still arriving, an idle kept-alive connection, or a
//! response whose reader stopped reading. A connection whose handler is
//! working is never shed.
//!
//! [`RequestDeadline`] rides in each request's extensions: the instant by
//! which the whole request (head and body) must have arrived.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::base::clock::mono_ms;
use crate::base::network::Network;
use crate::config::http::HttpConfig;

/// TLS handshakes one client address may have under way at once: a burst
/// of reconnections from a few addresses cannot crowd out another client's
/// handshake (the others wait their turn within the handshake timeout).
pub const HANDSHAKES_PER_ADDRESS: usize = 4;

/// A response not moving a byte for this long counts as stalled (sheddable).
const STALLED_RESPONSE_MS: i64 = 1_000;

/// The limits of one listener.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections from one client address; more are refused.
    pub per_address: usize,
    /// Connections from one /24 (IPv4) or /64 (IPv6) network.
    pub per_network: usize,
    /// Connections from all clients together.
    pub total: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's head and body must both have arrived within this of its
    /// first byte (and the next request's head within this of the last
    /// response on a kept-alive connection).
    pub request_timeout: Duration,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Duration,
}

impl ServerLimits {
    pub fn of(http: &HttpConfig) -> Self {
        ServerLimits {
            per_address: http.max_connections_per_ip,
            per_network: http.max_connections_per_network,
            total: http.max_connections,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: http.request_timeout,
            idle_timeout: http.idle_timeout,
        }
    }
}

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Accepted; the TLS handshake has not finished.
    Handshake = 0,
    /// Waiting for the first byte of a request.
    Idle = 1,
    /// A request head is arriving.
    Head = 2,
    /// The handler runs and the request body is still arriving.
    Body = 3,
    /// The handler runs and has the whole request.
    Working = 4,
    /// The response is being sent.
    Responding = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Handshake,
            1 => Phase::Idle,
            2 => Phase::Head,
            3 => Phase::Body,
            4 => Phase::Working,
            _ => Phase::Responding,
        }
    }
}

/// One connection's activity, shared by its IO wrapper, its service and the
/// registry (which reads it to choose whom to shed).
#[derive(Debug)]
pub struct ConnStats {
    phase: AtomicU8,
    /// When the phase began ([`mono_ms`]).
    since_ms: AtomicI64,
    /// When a byte last moved either way.
    last_ms: AtomicI64,
    /// Hyper answered a request it could not parse (400, 431): the client
    /// may still be sending it, so the close lingers (see `server.rs`).
    refused_head: std::sync::atomic::AtomicBool,
}

impl ConnStats {
    pub fn new() -> Self {
        let now = mono_ms();
        ConnStats {
            phase: AtomicU8::new(Phase::Handshake as u8),
            since_ms: AtomicI64::new(now),
            last_ms: AtomicI64::new(now),
            refused_head: std::sync::atomic::AtomicBool::new(false),
        }
    }
    pub fn note_refused_head(&self) {
        self.refused_head.store(true, Ordering::Relaxed);
    }
    pub fn refused_head(&self) -> bool {
        self.refused_head.load(Ordering::Relaxed)
    }
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }
    pub fn since_ms(&self) -> i64 {
        self.since_ms.load(Ordering::Relaxed)
    }
    pub fn last_ms(&self) -> i64 {
        self.last_ms.load(Ordering::Relaxed)
    }
    /// Enters `phase`, begun at `since` ([`mono_ms`]).
    pub fn enter(&self, phase: Phase, since: i64) {
        self.since_ms.store(since, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
    /// Moves from `from` to `to` (now), if the connection is in `from`.
    pub fn advance(&self, from: Phase, to: Phase) {
        if self
            .phase
            .compare_exchange(from as u8, to as u8, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.since_ms.store(mono_ms(), Ordering::Relaxed);
        }
    }
    /// A byte moved.
    pub fn touch(&self) {
        self.last_ms.store(mono_ms(), Ordering::Relaxed);
    }
    /// How long this connection has kept the server waiting on its client
    /// (ms), or None while its handler works or its response flows.
    pub fn waiting_ms(&self, now: i64) -> Option<i64> {
        match self.phase() {
            Phase::Handshake | Phase::Head | Phase::Body => Some(now - self.since_ms()),
            Phase::Idle => Some(now - self.last_ms()),
            Phase::Working => None,
            Phase::Responding => Some(now - self.last_ms()).filter(|w| *w >= STALLED_RESPONSE_MS),
        }
    }
    /// The request being read has been arriving for longer than `limit`:
    /// its head, or a body still being read (a byte came within `limit`; a
    /// handler that does not read the body reads nothing, and is left to
    /// finish).
    pub fn request_overdue(&self, now: i64, limit: Duration) -> bool {
        let limit = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        let overdue = now - self.since_ms() > limit;
        match self.phase() {
            Phase::Head => overdue,
            Phase::Body => overdue && now - self.last_ms() <= limit,
            _ => false,
        }
    }
}

impl Default for ConnStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The instant by which a request's head and body must have arrived, in
/// the request's extensions. Readers of the body stop there (408) and call
/// [`RequestDeadline::body_read`] once they have it all.
#[derive(Clone, Debug)]
pub struct RequestDeadline {
    pub at: Instant,
    stats: Arc<ConnStats>,
}

impl RequestDeadline {
    pub fn new(at: Instant, stats: Arc<ConnStats>) -> Self {
        RequestDeadline { at, stats }
    }
    /// The whole body has arrived: the handler now works on it.
    pub fn body_read(&self) {
        self.stats.advance(Phase::Body, Phase::Working);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds its cap.
    Address,
    /// Its network, or the server, is full of connections that are all busy.
    Full,
}

struct Entry {
    ip: IpAddr,
    net: Network,
    stats: Arc<ConnStats>,
    kill: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    by_ip: HashMap<IpAddr, usize>,
    by_net: HashMap<Network, usize>,
    handshakes: HashMap<IpAddr, Arc<Semaphore>>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        decrement(&mut self.by_ip, &e.ip);
        decrement(&mut self.by_net, &e.net);
        if !self.by_ip.contains_key(&e.ip) {
            self.handshakes.remove(&e.ip);
        }
        Some(e)
    }
    /// The connection (of `net`, or any) that has kept us waiting longest.
    fn longest_waiting(&self, net: Option<Network>) -> Option<u64> {
        let now = mono_ms();
        self.conns
            .iter()
            .filter(|(_, e)| net.is_none_or(|n| e.net == n))
            .filter_map(|(id, e)| e.stats.waiting_ms(now).map(|w| (w, *id)))
            .max()
            .map(|(_, id)| id)
    }
}

fn decrement<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(k);
        }
    }
}

/// The open connections of one listener.
pub struct Registry {
    limits: ServerLimits,
    table: Mutex<Table>,
}

/// A connection's place in the [`Registry`]; given back when dropped.
pub struct Slot {
    registry: Arc<Registry>,
    id: u64,
    pub stats: Arc<ConnStats>,
    /// Notified when the connection is shed: close it at once.
    pub kill: Arc<Notify>,
    /// Its address's turns at a TLS handshake ([`HANDSHAKES_PER_ADDRESS`]).
    pub handshake_turns: Arc<Semaphore>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.registry.table.lock() {
            t.remove(self.id);
        }
    }
}

/// What [`Registry::admit`] did.
pub struct Admitted {
    pub slot: Slot,
    /// Connections shed to make room (0 or 1).
    pub shed: usize,
}

impl Registry {
    pub fn new(limits: ServerLimits) -> Arc<Self> {
        Arc::new(Registry {
            limits,
            table: Mutex::new(Table::default()),
        })
    }

    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.table.lock().map(|t| t.conns.len()).unwrap_or(0)
    }

    /// Admits a connection from `ip`, shedding the longest-waiting one of
    /// its network, or of all, when a cap is full. Fails closed: a poisoned
    /// table admits nobody.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let ip = ip.to_canonical();
        let net = Network::of(ip);
        let mut t = self.table.lock().map_err(|_| Refused::Full)?;
        if t.by_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_address {
            return Err(Refused::Address);
        }
        let mut shed = 0;
        if t.by_net.get(&net).copied().unwrap_or(0) >= self.limits.per_network {
            let victim = t.longest_waiting(Some(net)).ok_or(Refused::Full)?;
            if let Some(e) = t.remove(victim) {
                e.kill.notify_one();
                shed += 1;
            }
        }
        if t.conns.len() >= self.limits.total {
            let victim = t.longest_waiting(None).ok_or(Refused::Full)?;
            if let Some(e) = t.remove(victim) {
                e.kill.notify_one();
                shed += 1;
            }
        }
        t.next_id += 1;
        let id = t.next_id;
        let stats = Arc::new(ConnStats::new());
        let kill = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Entry {
                ip,
                net,
                stats: stats.clone(),
                kill: kill.clone(),
            },
        );
        *t.by_ip.entry(ip).or_insert(0) += 1;
        *t.by_net.entry(net).or_insert(0) += 1;
        let handshake_turns = t
            .handshakes
            .entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(HANDSHAKES_PER_ADDRESS)))
            .clone();
        Ok(Admitted {
            slot: Slot {
                registry: self.clone(),
                id,
                stats,
                kill,
                handshake_turns,
            },
            shed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: usize, per_network: usize, total: usize) -> ServerLimits {
        ServerLimits {
            per_address,
            per_network,
            total,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_over_its_cap_is_refused_and_its_slots_come_back() {
        let r = Registry::new(limits(2, 100, 100));
        let a = r.admit(ip("10.0.0.1")).unwrap();
        let _b = r.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(r.admit(ip("10.0.0.1")).err(), Some(Refused::Address));
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert_eq!(r.admit(ip("::ffff:10.0.0.1")).err(), Some(Refused::Address));
        drop(a);
        assert!(r.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_full_network_sheds_its_longest_waiting_connection() {
        let r = Registry::new(limits(10, 3, 100));
        let old = r.admit(ip("10.0.0.1")).unwrap().slot;
        old.stats.enter(Phase::Head, mono_ms() - 5_000);
        let busy = r.admit(ip("10.0.0.2")).unwrap().slot;
        busy.stats.enter(Phase::Working, mono_ms() - 60_000);
        let _young = r.admit(ip("10.0.0.3")).unwrap().slot;
        // Another network is not touched by this one's cap.
        let _other = r.admit(ip("10.0.9.1")).unwrap().slot;
        let a = r.admit(ip("10.0.0.4")).unwrap();
        assert_eq!(a.shed, 1);
        assert_eq!(r.open(), 4);
        // The slow head was shed (and told so), not the working handler.
        let t = r.table.lock().unwrap();
        assert!(!t.conns.contains_key(&old.id));
        assert!(t.conns.contains_key(&busy.id));
        drop(t);
        assert!(is_notified(&old.kill), "the shed connection is told to close");
        // Its slot going away later changes nothing.
        drop(old);
        assert_eq!(r.open(), 4);
    }

    /// Whether `n` holds a notification (polled once, without a runtime).
    fn is_notified(n: &Notify) -> bool {
        use std::future::Future;
        let f = n.notified();
        futures::pin_mut!(f);
        let waker = futures::task::noop_waker();
        f.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_ready()
    }

    #[test]
    fn a_full_server_sheds_idle_before_busy_and_refuses_when_all_work() {
        let r = Registry::new(limits(10, 10, 2));
        let idle = r.admit(ip("10.0.0.1")).unwrap().slot;
        idle.stats.enter(Phase::Idle, mono_ms());
        idle.stats.last_ms.store(mono_ms() - 20_000, Ordering::Relaxed);
        let streaming = r.admit(ip("10.0.1.1")).unwrap().slot;
        streaming.stats.enter(Phase::Responding, mono_ms() - 60_000);
        streaming.stats.touch();
        let n = r.admit(ip("10.0.2.1")).unwrap();
        assert_eq!(n.shed, 1);
        n.slot.stats.enter(Phase::Working, mono_ms());
        // Now one streams (moving bytes) and one works: nobody to shed.
        assert_eq!(r.admit(ip("10.0.3.1")).err(), Some(Refused::Full));
        // A stream whose reader stopped reading is shed.
        streaming.stats.last_ms.store(mono_ms() - 5_000, Ordering::Relaxed);
        assert_eq!(r.admit(ip("10.0.3.1")).unwrap().shed, 1);
    }

    #[test]
    fn an_overdue_request_is_one_still_arriving() {
        let s = ConnStats::new();
        let limit = Duration::from_secs(10);
        s.enter(Phase::Body, mono_ms() - 11_000);
        assert!(s.request_overdue(mono_ms(), limit), "a body trickling in");
        s.last_ms.store(mono_ms() - 10_500, Ordering::Relaxed);
        assert!(
            !s.request_overdue(mono_ms(), limit),
            "a body sent at once, a handler at work that has not read it"
        );
        s.enter(Phase::Head, mono_ms() - 11_000);
        assert!(s.request_overdue(mono_ms(), limit), "a head, however it arrives");
        let d = RequestDeadline::new(Instant::now(), Arc::new(ConnStats::new()));
        d.stats.enter(Phase::Body, mono_ms() - 11_000);
        d.body_read();
        assert_eq!(d.stats.phase(), Phase::Working);
        assert!(!d.stats.request_overdue(mono_ms(), limit));
        s.enter(Phase::Idle, mono_ms() - 11_000);
        assert!(!s.request_overdue(mono_ms(), limit));
    }

    #[test]
    fn an_address_shares_its_handshake_turns_and_they_go_with_its_last_connection() {
        let r = Registry::new(limits(10, 10, 10));
        let a = r.admit(ip("10.0.0.1")).unwrap().slot;
        let b = r.admit(ip("10.0.0.1")).unwrap().slot;
        let other = r.admit(ip("10.0.0.2")).unwrap().slot;
        assert!(Arc::ptr_eq(&a.handshake_turns, &b.handshake_turns));
        assert!(!Arc::ptr_eq(&a.handshake_turns, &other.handshake_turns));
        let turns: Vec<_> = (0..HANDSHAKES_PER_ADDRESS)
            .map(|_| a.handshake_turns.clone().try_acquire_owned().unwrap())
            .collect();
        assert!(b.handshake_turns.clone().try_acquire_owned().is_err(), "a fifth waits");
        assert!(
            other.handshake_turns.clone().try_acquire_owned().is_ok(),
            "another address does not"
        );
        drop(turns);
        drop((a, b));
        assert!(!r.table.lock().unwrap().handshakes.contains_key(&ip("10.0.0.1")));
    }
}
