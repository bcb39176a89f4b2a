//! The connection loop under attack and under shutdown, over real sockets on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use rampart::server::{serve, Drain, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Drain>,
}

async fn start(options: ServeOptions) -> Running {
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route("/huge", get(|| async { vec![b'x'; 32 * 1024 * 1024] }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "slow done"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, app, options, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        done,
    }
}

/// Sends one request with `Connection: close` and returns the whole response text.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// True once the server has closed the connection (EOF or reset).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // a 408 from hyper may precede the close
        }
    }
}

#[tokio::test]
async fn slowloris_is_disconnected_after_the_header_timeout() {
    let server = start(ServeOptions {
        header_read_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /fast HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let mut dropped = false;
    // Trickle one byte every 100 ms, forever: a complete head never arrives.
    for byte in head.iter().chain(std::iter::repeat(&b'a')).take(60) {
        if stream.write_all(&[*byte]).await.is_err() {
            dropped = true;
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(100)).await {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a slowloris client must be disconnected");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "dropped only after {elapsed:?}"
    );
}

#[tokio::test]
async fn idle_connection_that_sends_nothing_is_closed() {
    let server = start(ServeOptions {
        header_read_timeout: Duration::from_millis(400),
        ..ServeOptions::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let server = start(ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    // The first connection holds the only slot while it is open.
    first
        .write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut second, Duration::from_secs(2)).await);
    drop(first);
    // The slot frees when the first connection ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert!(request(&mut third, "/fast")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = start(ServeOptions {
        max_connections_per_ip: 2,
        ..ServeOptions::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "a third connection from the same address must be refused"
    );
    held.clear();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        request(&mut again, "/fast")
            .await
            .starts_with("HTTP/1.1 200"),
        "slots free when connections close"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_slot() {
    let server = start(ServeOptions {
        max_connections: 1,
        write_stall_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    // Ask for 32 MiB and never read: the server's writes stall once the socket buffers fill.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // While it holds the only slot, nobody else gets in; after the stall timeout it is dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut other = TcpStream::connect(server.addr).await.unwrap();
        let head = b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        if other.write_all(head).await.is_ok() {
            let mut response = String::new();
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                other.read_to_string(&mut response),
            )
            .await;
            if response.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the stalled reader still holds the only slot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_connections() {
    let mut server = start(ServeOptions::default()).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        request(&mut stream, "/slow").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = server.stop.take().map(|s| s.send(()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener must be closed after shutdown"
    );
    let response = in_flight.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("slow done"));
    assert_eq!(server.done.await.unwrap(), Drain::Complete);
}

#[tokio::test]
async fn drain_stops_waiting_at_the_deadline() {
    let mut server = start(ServeOptions {
        drain_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    })
    .await;
    let addr = server.addr;
    let _in_flight = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        request(&mut stream, "/slow").await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = server.stop.take().map(|s| s.send(()));
    assert_eq!(server.done.await.unwrap(), Drain::TimedOut);
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let server = start(ServeOptions::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let huge = "a".repeat(64 * 1024);
    let head =
        format!("GET /fast HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response}"
    );
    assert!(!response.contains("fast"));
}
