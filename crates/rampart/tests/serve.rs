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
        .route(
            "/upload",
            axum::routing::post(|body: axum::body::Bytes| async move {
                format!("received {}", body.len())
            }),
        )
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
async fn at_the_cap_a_new_connection_takes_an_idle_ones_place_and_is_refused_when_all_are_busy() {
    let server = start(ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    })
    .await;
    let addr = server.addr;
    // The only slot is busy with a request: a new connection finds no room.
    let busy = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        (stream, String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
    let (mut first, answer) = busy.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("slow done"),
        "the busy request was finished, not cut"
    );
    // Now it is idle between requests (keep-alive): a new connection takes its place.
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(request(&mut third, "/fast")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut first, Duration::from_secs(2)).await);
}

/// A connection from `ip` (any 127.0.0.0/8 address reaches the loopback listener).
async fn connect_from(ip: [u8; 4], server: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

#[tokio::test]
async fn hosts_hogging_every_slot_with_idle_connections_lose_them_to_new_clients() {
    let server = start(ServeOptions {
        max_connections: 40,
        max_connections_per_ip: 10,
        ..ServeOptions::default()
    })
    .await;
    // The review's attack: several hosts each take their share of slots with connections
    // that never send a request (and would open them again the moment they are closed).
    let mut hogs = Vec::new();
    for host in 2..=4 {
        for _ in 0..10 {
            hogs.push(connect_from([127, 0, 0, host], server.addr).await);
        }
    }
    for _ in 0..9 {
        hogs.push(connect_from([127, 0, 0, 5], server.addr).await);
    }
    // The fortieth slot: a request in progress, which must not be the one to go.
    let mut slow = connect_from([127, 0, 0, 5], server.addr).await;
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Each new client keeps its connection open, so each needs a slot of its own.
    let mut clients = Vec::new();
    for client in 10..20 {
        let mut stream = connect_from([127, 0, 0, client], server.addr).await;
        stream
            .write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        let response = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "client {client}: {response:?}"
        );
        clients.push(stream);
    }
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("slow done"), "{answer}");
    let mut closed = 0;
    for hog in &mut hogs {
        if closed_within(hog, Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    assert!(closed >= 10, "the hogs made the room: {closed} closed");
}

#[tokio::test]
async fn stalled_uploads_lose_their_slots_to_new_clients() {
    let server = start(ServeOptions {
        max_connections: 40,
        max_connections_per_ip: 10,
        ..ServeOptions::default()
    })
    .await;
    // The review's second attack: every slot held by a request that declared a body and sent
    // one byte of it, from several hosts each within its share.
    let mut stalled = Vec::new();
    for host in 2..=5 {
        for _ in 0..10 {
            let mut stream = connect_from([127, 0, 0, host], server.addr).await;
            stream
                .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nx")
                .await
                .unwrap();
            stalled.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Each new client keeps its connection open, so each needs a slot of its own.
    let mut clients = Vec::new();
    for client in 10..20 {
        let mut stream = connect_from([127, 0, 0, client], server.addr).await;
        stream
            .write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "client {client}: {answer:?}"
        );
        clients.push(stream);
    }
    let mut closed = 0;
    for stream in &mut stalled {
        if closed_within(stream, Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 10,
        "the stalled uploads made the room: {closed} closed"
    );
    // An upload that finished its body is busy, not stalled: it keeps its slot and its answer.
    let server = start(ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    })
    .await;
    let mut whole = TcpStream::connect(server.addr).await.unwrap();
    whole
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        .await
        .unwrap();
    let mut answer = String::new();
    whole.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("received 3"), "{answer}");
}

#[tokio::test]
async fn shutdown_closes_connections_that_never_sent_a_request_at_once() {
    let mut server = start(ServeOptions {
        header_read_timeout: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(20),
        ..ServeOptions::default()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    let _ = server.stop.take().map(|s| s.send(()));
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    assert_eq!(server.done.await.unwrap(), Drain::Complete);
    assert!(stopping.elapsed() < Duration::from_secs(2));
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
