//! The connection loop: accepts TCP connections and serves HTTP/1.1 on them with hard limits.
//!
//! Defends against connection-level exhaustion, which middleware cannot see: a client that opens
//! a socket and trickles its request head byte by byte (slowloris) is dropped when the header-read
//! timeout passes, which also bounds idle keep-alive connections; oversized heads are refused by
//! hyper's buffer limit (431); the number of open connections is capped, and a connection that
//! finds no room is closed at once rather than queued. On shutdown the listener closes first (new
//! connections are refused), connections between requests close, in-flight requests are drained
//! up to a deadline, then it exits.
//!
//! One peer address (an IPv6 peer by its /64) may hold only a share of the connections (trusted
//! proxies are exempt), and
//! a client that stops reading responses is dropped once a write has made no progress for the
//! stall timeout, so neither many sockets from one host nor a few stalled readers can pin
//! every slot. Many hosts together can fill every slot; then a new connection takes the place
//! of the oldest idle one of the peer holding the most ([`Connections`]), so the hosts hogging
//! slots lose them, not the client arriving with one. A connection whose request is still
//! waiting for body bytes counts as idle for this: a stalled upload holds no slot a new client
//! needs (the body-read timeout alone would let many hosts re-fill every slot as fast as it
//! cuts them).
//!
//! `axum::serve` exposes none of these knobs, hence this loop. It speaks HTTP/1.1 only: TLS and
//! HTTP/2 belong to the proxy in front, and leaving h2c out removes its stream-flood surface.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time allowed to receive a complete request head, and to wait idle for the next one.
    pub header_read_timeout: Duration,
    /// How long a response write may make no progress before the connection is dropped.
    pub write_stall_timeout: Duration,
    /// Open connections at once; more are closed on accept.
    pub max_connections: usize,
    /// Open connections from one peer address; more are closed on accept.
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap (the trusted reverse proxies).
    pub per_ip_exempt: Vec<ipnet::IpNet>,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Request head buffer (hyper's minimum is 8 KiB); larger heads get 431.
    pub max_head_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            per_ip_exempt: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
        }
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every in-flight request finished.
    Complete,
    /// The drain deadline passed with requests still running; they were dropped.
    TimedOut,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Drain {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_head_bytes.max(8192))
        .keep_alive(true);
    let http = Arc::new(http);
    let connections = Arc::new(Connections::new(&options));
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let refusals = crate::telemetry::KeyedThrottle::default();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ticket = match Connections::admit(&connections, peer.ip()) {
            Ok(ticket) => ticket,
            Err(refused) => {
                // A flood of refusals is a line a second with a count, not a line each.
                if let Some(left_out) = refusals.admit(refused.as_str()) {
                    tracing::warn!(
                        left_out,
                        limit = refused.limit(&options),
                        "{}; closing new connection",
                        refused.as_str()
                    );
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (started, finished) = (Arc::clone(&ticket.conn), Arc::clone(&ticket.conn));
        let service = app
            .clone()
            .map_request(move |request: http::Request<Incoming>| {
                started.requests.fetch_add(1, Ordering::Relaxed);
                started.in_flight.fetch_add(1, Ordering::Relaxed);
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(ConnectInfo::<SocketAddr>(peer));
                let body = Receiving::new(body, &started);
                http::Request::from_parts(parts, axum::body::Body::new(body))
            })
            .map_response(move |response| {
                finished.in_flight.fetch_sub(1, Ordering::Relaxed);
                response
            });
        let io = StallGuard {
            inner: stream,
            stall: options.write_stall_timeout,
            deadline: None,
        };
        let http = Arc::clone(&http);
        let mut stop_seen = stop_seen.clone();
        tokio::spawn(async move {
            let connection =
                http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            let mut connection = std::pin::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(err) = ended {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                        break;
                    }
                    () = ticket.conn.evict.notified(), if !closing => {}
                    // A value sent, or the sender gone with the server: stopping either way.
                    _ = stop_seen.changed(), if !closing => {}
                }
                // Evicted, or the server is stopping. A connection that never sent a whole
                // request, or whose request is still waiting for its body, has nothing to
                // finish: it is closed now (a handler waiting for a body has acted on none of
                // it). Otherwise hyper closes it if it is between requests, or after the
                // response it is writing.
                if ticket.conn.requests.load(Ordering::Relaxed) == 0 || ticket.conn.stalled() {
                    break;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            drop(ticket);
        });
    }

    drop(listener);
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stopping.send(true);
    tokio::select! {
        () = connections.all_closed() => Drain::Complete,
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain timeout passed with requests still in flight");
            Drain::TimedOut
        }
    }
}

/// One open connection, as the registry sees it.
#[derive(Debug)]
struct Conn {
    opened: std::time::Instant,
    /// Requests whose head arrived whole; 0 for a connection still waiting for its first.
    requests: AtomicU64,
    /// Requests being handled now (a response's body may still stream after).
    in_flight: AtomicUsize,
    /// Of those, the ones whose body has not all arrived yet.
    receiving: AtomicUsize,
    /// Chosen to make room; set once.
    evicting: AtomicBool,
    evict: tokio::sync::Notify,
}

impl Conn {
    /// Whether every request it is handling is still waiting for its body: nothing to finish.
    fn stalled(&self) -> bool {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        in_flight > 0 && self.receiving.load(Ordering::Relaxed) >= in_flight
    }

    /// Whether it may be closed to make room: handling no request, or only requests still
    /// waiting for their bodies.
    fn evictable(&self) -> bool {
        !self.evicting.load(Ordering::Relaxed)
            && (self.in_flight.load(Ordering::Relaxed) == 0 || self.stalled())
    }
}

/// A request body that tells its connection while bytes are still due, so a connection held
/// open by an upload that stalled can be told from one doing work.
struct Receiving {
    inner: Incoming,
    /// Set while the body is due; taken (and the count given back) at its end or drop.
    conn: Option<Arc<Conn>>,
}

impl Receiving {
    fn new(inner: Incoming, conn: &Arc<Conn>) -> Self {
        use hyper::body::Body as _;
        let conn = (!inner.is_end_stream()).then(|| {
            conn.receiving.fetch_add(1, Ordering::Relaxed);
            Arc::clone(conn)
        });
        Self { inner, conn }
    }

    fn arrived(&mut self) {
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
enum Refused {
    /// Its peer already holds its share.
    PeerFull,
    /// Every slot is busy with a request, or enough are already being freed.
    Full,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Self::PeerFull => "per-address connection limit reached",
            Self::Full => "connection limit reached with no idle connection to close",
        }
    }

    fn limit(self, options: &ServeOptions) -> usize {
        match self {
            Self::PeerFull => options.max_connections_per_ip,
            Self::Full => options.max_connections,
        }
    }
}

/// Connections closed to make room that have not gone yet: how far the total may run over
/// the cap for a moment.
const MAX_EVICTING: usize = 64;

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
struct Connections {
    state: Mutex<Open>,
    cap: usize,
    cap_per_peer: usize,
    exempt: Vec<ipnet::IpNet>,
    emptied: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Open {
    peers: HashMap<IpAddr, Vec<Arc<Conn>>>,
    total: usize,
    evicting: usize,
}

/// A connection's place in [`Connections`]; released on drop.
struct Ticket {
    connections: Arc<Connections>,
    peer: IpAddr,
    conn: Arc<Conn>,
}

impl Connections {
    fn new(options: &ServeOptions) -> Self {
        Self {
            state: Mutex::default(),
            cap: options.max_connections,
            cap_per_peer: options.max_connections_per_ip,
            exempt: options.per_ip_exempt.clone(),
            emptied: tokio::sync::Notify::new(),
        }
    }

    fn admit(connections: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
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
    fn idle_of_busiest(peers: &HashMap<IpAddr, Vec<Arc<Conn>>>) -> Option<Arc<Conn>> {
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
    async fn all_closed(&self) {
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

/// A socket whose writes fail once they have made no progress for `stall`: a client that stops
/// reading cannot hold its connection (and its slot) forever. hyper has no write timeout.
struct StallGuard<S> {
    inner: S,
    stall: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    /// Called when a write is pending: arms the deadline, or fails once it has passed.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let stall = self.stall;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_stall(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
