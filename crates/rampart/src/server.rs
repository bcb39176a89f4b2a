//! The connection loop: accepts TCP connections and serves HTTP/1.1 on them with hard limits.
//!
//! Defends against connection-level exhaustion, which middleware cannot see: a client that opens
//! a socket and trickles its request head byte by byte (slowloris) is dropped when the header-read
//! timeout passes, which also bounds idle keep-alive connections; oversized heads are refused by
//! hyper's buffer limit (431); the number of open connections is capped, and connections over
//! the cap are closed at once rather than queued. On shutdown the listener closes first (new
//! connections are refused), in-flight requests are drained up to a deadline, then it exits.
//!
//! One peer address (an IPv6 peer by its /64) may hold only a share of the connections (trusted
//! proxies are exempt), and
//! a client that stops reading responses is dropped once a write has made no progress for the
//! stall timeout, so neither many sockets from one host nor a few stalled readers can pin
//! every slot.
//!
//! `axum::serve` exposes none of these knobs, hence this loop. It speaks HTTP/1.1 only: TLS and
//! HTTP/2 belong to the proxy in front, and leaving h2c out removes its stream-flood surface.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let peers = Arc::new(PeerSlots {
        open: Mutex::new(HashMap::new()),
        cap: options.max_connections_per_ip,
        exempt: options.per_ip_exempt.clone(),
    });
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                limit = options.max_connections,
                "connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        };
        let Some(peer_slot) = PeerSlots::take(&peers, peer.ip()) else {
            tracing::warn!(
                limit = options.max_connections_per_ip,
                "per-address connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let io = StallGuard {
            inner: stream,
            stall: options.write_stall_timeout,
            deadline: None,
        };
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(peer_slot);
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => Drain::Complete,
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain timeout passed with requests still in flight");
            Drain::TimedOut
        }
    }
}

/// Open connections per peer address.
struct PeerSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    cap: usize,
    exempt: Vec<ipnet::IpNet>,
}

/// One connection's share of its peer's slots; released on drop.
struct PeerSlot {
    peers: Arc<PeerSlots>,
    ip: Option<IpAddr>,
}

impl PeerSlots {
    fn take(peers: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        if peers.exempt.iter().any(|net| net.contains(&ip)) {
            return Some(PeerSlot {
                peers: Arc::clone(peers),
                ip: None,
            });
        }
        // An IPv6 host is given a whole /64: counting addresses would give it 2^64 shares.
        let ip = crate::limit::ClientAddress::of(ip).ip();
        let mut open = peers.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= peers.cap {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: Arc::clone(peers),
            ip: Some(ip),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self
            .peers
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                // The map holds only peers with open connections, so it stays bounded.
                open.remove(&ip);
            }
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
