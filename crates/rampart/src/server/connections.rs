//! The connection registry: every open connection, its peer and whether it is serving, so the
//! cap can make room by closing the oldest idle connection of the peer holding the most.
//!
//! Defends against many hosts together pinning every slot with idle keep-alive connections or
//! uploads stalled after one byte (see the module above).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use hyper::body::Incoming;

use super::ServeOptions;

/// One open connection, as the registry sees it.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) opened: std::time::Instant,
    /// Requests whose head arrived whole; 0 for a connection still waiting for its first.
    pub(super) requests: AtomicU64,
    /// Requests being handled now (a response's body may still stream after).
    pub(super) in_flight: AtomicUsize,
    /// Of those, the ones whose body has not all arrived yet.
    pub(super) receiving: AtomicUsize,
    /// Chosen to make room; set once.
    pub(super) evicting: AtomicBool,
    pub(super) evict: tokio::sync::Notify,
}

impl Conn {
    /// Whether every request it is handling is still waiting for its body: nothing to finish.
    pub(super) fn stalled(&self) -> bool {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        in_flight > 0 && self.receiving.load(Ordering::Relaxed) >= in_flight
    }

    /// Whether it may be closed to make room: handling no request, or only requests still
    /// waiting for their bodies.
    pub(super) fn evictable(&self) -> bool {
        !self.evicting.load(Ordering::Relaxed)
            && (self.in_flight.load(Ordering::Relaxed) == 0 || self.stalled())
    }
}

/// A request body that tells its connection while bytes are still due, so a connection held
/// open by an upload that stalled can be told from one doing work.
pub(super) struct Receiving {
    pub(super) inner: Incoming,
    /// Set while the body is due; taken (and the count given back) at its end or drop.
    pub(super) conn: Option<Arc<Conn>>,
}

impl Receiving {
    pub(super) fn new(inner: Incoming, conn: &Arc<Conn>) -> Self {
        use hyper::body::Body as _;
        let conn = (!inner.is_end_stream()).then(|| {
            conn.receiving.fetch_add(1, Ordering::Relaxed);
            Arc::clone(conn)
        });
        Self { inner, conn }
    }

    pub(super) fn arrived(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.receiving.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl hyper::body::Body for Receiving {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.arrived();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.arrived();
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refused {
    /// Its peer already holds its share.
    PeerFull,
    /// Every slot is busy with a request, or enough are already being freed.
    Full,
}

impl Refused {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::PeerFull => "per-address connection limit reached",
            Self::Full => "connection limit reached with no idle connection to close",
        }
    }

    pub(super) fn limit(self, options: &ServeOptions) -> usize {
        match self {
            Self::PeerFull => options.max_connections_per_ip,
            Self::Full => options.max_connections,
        }
    }
}

/// Connections closed to make room that have not gone yet: how far the total may run over
/// the cap for a moment.
pub(super) const MAX_EVICTING: usize = 64;

/// Every open connection, by peer (an IPv6 host by its /64): what the caps count and what
/// room is made from.
///
/// At the cap, a new connection is not simply refused: that would let a few hosts keep every
/// slot with connections that never send a whole request (each closed at the header timeout
/// and opened again at once). Instead the oldest idle connection of the peer holding the most
/// is closed for it, so the hosts hogging slots lose them first and a client with one
/// connection gets in. Idle means no request being handled, or only requests still waiting
/// for body bytes: one still waiting for its first head or for a body is closed outright, one
/// between requests by hyper (which finishes any response it is writing). Only when every
/// connection is busy with a request that has all its body is a new one refused.
#[derive(Debug)]
pub(super) struct Connections {
    pub(super) state: Mutex<Open>,
    pub(super) cap: usize,
    pub(super) cap_per_peer: usize,
    pub(super) exempt: Vec<ipnet::IpNet>,
    pub(super) emptied: tokio::sync::Notify,
}

#[derive(Debug, Default)]
pub(super) struct Open {
    pub(super) peers: HashMap<IpAddr, Vec<Arc<Conn>>>,
    pub(super) total: usize,
    pub(super) evicting: usize,
}

/// A connection's place in [`Connections`]; released on drop.
pub(super) struct Ticket {
    pub(super) connections: Arc<Connections>,
    pub(super) peer: IpAddr,
    pub(super) conn: Arc<Conn>,
}

impl Connections {
    pub(super) fn new(options: &ServeOptions) -> Self {
        Self {
            state: Mutex::default(),
            cap: options.max_connections,
            cap_per_peer: options.max_connections_per_ip,
            exempt: options.per_ip_exempt.clone(),
            emptied: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn admit(connections: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let exempt = connections.exempt.iter().any(|net| net.contains(&ip));
        // An IPv6 host is given a whole /64: counting addresses would give it 2^64 shares.
        let peer = if exempt {
            ip
        } else {
            crate::limit::ClientAddress::of(ip).ip()
        };
        let mut open = connections
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = open.peers.get(&peer).map_or(0, Vec::len);
        if !exempt && held >= connections.cap_per_peer {
            return Err(Refused::PeerFull);
        }
        if open.total >= connections.cap {
            if open.evicting >= MAX_EVICTING {
                return Err(Refused::Full);
            }
            let victim = Self::idle_of_busiest(&open.peers).ok_or(Refused::Full)?;
            victim.evicting.store(true, Ordering::Relaxed);
            victim.evict.notify_one();
            open.evicting += 1;
        }
        let conn = Arc::new(Conn {
            opened: std::time::Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            receiving: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        });
        open.peers.entry(peer).or_default().push(Arc::clone(&conn));
        open.total += 1;
        Ok(Ticket {
            connections: Arc::clone(connections),
            peer,
            conn,
        })
    }

    /// The oldest connection handling no request (or only requests still waiting for their
    /// bodies), of the peer holding the most connections.
    pub(super) fn idle_of_busiest(peers: &HashMap<IpAddr, Vec<Arc<Conn>>>) -> Option<Arc<Conn>> {
        peers
            .values()
            .flat_map(|conns| {
                conns
                    .iter()
                    .filter(|conn| conn.evictable())
                    .map(move |conn| (conns.len(), conn))
            })
            .max_by(|(held_a, a), (held_b, b)| held_a.cmp(held_b).then(b.opened.cmp(&a.opened)))
            .map(|(_, conn)| Arc::clone(conn))
    }

    /// Resolves once no connection is open.
    pub(super) async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .total
                == 0
            {
                return;
            }
            emptied.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(conns) = open.peers.get_mut(&self.peer) {
            conns.retain(|conn| !Arc::ptr_eq(conn, &self.conn));
            if conns.is_empty() {
                // The map holds only peers with open connections, so it stays bounded.
                open.peers.remove(&self.peer);
            }
        }
        open.total -= 1;
        if self.conn.evicting.load(Ordering::Relaxed) {
            open.evicting -= 1;
        }
        if open.total == 0 {
            self.connections.emptied.notify_waiters();
        }
    }
}
