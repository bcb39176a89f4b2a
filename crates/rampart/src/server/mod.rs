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

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

mod connections;
mod stall;

use connections::{Connections, Receiving};
use stall::StallGuard;

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

/// Serves `app` on `listener` until `shutdown` resolves, then drains. `app` is any service
/// that answers axum requests: an axum `Router`, or the hardened stack unboxed
/// ([`crate::http::Hardening::secured_service`]).
pub async fn serve<A>(
    listener: TcpListener,
    app: A,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Drain
where
    A: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
{
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
        let io = StallGuard::new(stream, options.write_stall_timeout);
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

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is called,
/// not when the future is first polled: call it before announcing the listener, so a
/// supervisor that sends SIGTERM as soon as the server says it is listening gets a drain, not
/// the default action's instant death (which also loses the log lines not yet flushed).
/// Must be called within a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
