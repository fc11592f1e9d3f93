//! Slow clients: connections that send their request head or body a byte now and then are
//! closed by the server after the header or body timeout, connections past the cap are
//! closed at once, and other clients are answered all the while. Loopback only, a fixed
//! number of connections, each given up after a bounded time.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The timeouts of these tests (the settings' smallest).
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a slow client waits for the server to close its connection before it gives
/// up (and the test fails): well past the timeout, well short of the request timeout.
const GIVE_UP: Duration = Duration::from_secs(8);

/// What became of one slow connection.
struct Slow {
    /// How long after it connected the server closed it; `None`: not within `GIVE_UP`.
    closed_after: Option<Duration>,
    /// What the server sent before closing.
    answer: String,
}

/// How often a slow client sends one more `drip`: its slowness, the point of it.
const DRIP_EVERY: Duration = Duration::from_millis(200);

/// Connects, sends `opening` (then says so on `opened`), then one more `drip` every
/// `DRIP_EVERY` (never completing its request) until the server closes the connection or
/// `GIVE_UP` passes.
async fn slow_client(
    addr: SocketAddr,
    opening: String,
    drip: &'static [u8],
    opened: mpsc::Sender<()>,
) -> Slow {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connects on loopback");
    let _ = stream.write_all(opening.as_bytes()).await;
    let _ = opened.send(()).await;
    drop(opened);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut drips = tokio::time::interval(DRIP_EVERY);
    drips.tick().await;
    let give_up = tokio::time::sleep(GIVE_UP);
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            biased;
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    return Slow { closed_after: Some(started.elapsed()), answer };
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = &mut give_up => {
                return Slow { closed_after: None, answer: String::from_utf8_lossy(&answer).into_owned() };
            }
            // Once answered it stops sending: a byte the server never reads would turn its
            // close into a reset, which may drop the answer before it is read here.
            _ = drips.tick(), if answer.is_empty() => {
                // A write that fails means the server closed: the next read says so.
                let _ = stream.write_all(drip).await;
            }
        }
    }
}

/// `count` slow clients at once, each opening with `opening`. Returns once every one of
/// them has connected and sent its opening; the handle gives what became of each.
async fn slowloris(
    addr: SocketAddr,
    count: usize,
    opening: &str,
    drip: &'static [u8],
) -> JoinHandle<Vec<Slow>> {
    let (opened_tx, mut opened) = mpsc::channel(count);
    let clients: Vec<_> = (0..count)
        .map(|_| tokio::spawn(slow_client(addr, opening.to_string(), drip, opened_tx.clone())))
        .collect();
    drop(opened_tx);
    for _ in 0..count {
        opened.recv().await.expect("every slow client connects and sends its opening");
    }
    tokio::spawn(async move {
        futures::future::join_all(clients).await.into_iter().map(|r| r.expect("slow client")).collect()
    })
}

/// How often the dashboard asks: its pace, as a dashboard refreshing would.
const DASHBOARD_EVERY: Duration = Duration::from_millis(50);

/// A dashboard: asks records/list one request after another on its own connection for
/// `span`, and returns every answer's HTTP status and envelope code.
async fn dashboard(s: &TestServer, client: &reqwest::Client, span: Duration) -> Vec<(StatusCode, Value)> {
    let until = Instant::now() + span;
    let mut answers = Vec::new();
    while Instant::now() < until {
        let res = client
            .post(s.url("/api/aicall/records/list"))
            .json(&json!({"callType": "02"}))
            .send()
            .await
            .expect("the dashboard's request is answered");
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        answers.push((status, v["code"].clone()));
        tokio::time::sleep(DASHBOARD_EVERY).await;
    }
    answers
}

fn addr(s: &TestServer) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().expect("the server's address")
}

fn all_answered(answers: &[(StatusCode, Value)]) {
    assert!(answers.len() >= 5, "the dashboard asked only {} times", answers.len());
    for (status, code) in answers {
        assert_eq!((*status, code.clone()), (StatusCode::OK, json!(0)), "a dashboard request was refused");
    }
}

#[tokio::test]
async fn slow_request_heads_are_cut_off_connections_past_the_cap_closed_at_once_and_others_answered() {
    const CAP: usize = 32;
    const SLOW: usize = 48;
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.server.max_connections = CAP;
        c.server.header_read_timeout_secs = TIMEOUT.as_secs();
    })
    .await;
    // The dashboard's connection is open before the slowloris starts: it holds one place.
    let client = reqwest::Client::new();
    let first = dashboard(&s, &client, Duration::from_millis(1)).await;
    assert_eq!(first, [(StatusCode::OK, json!(0))]);

    let head = "POST /api/aicall/records/list HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let slow = slowloris(addr(&s), SLOW, head, b"a").await;
    all_answered(&dashboard(&s, &client, TIMEOUT * 2).await);
    let slow = slow.await.unwrap();

    let never_closed = slow.iter().filter(|c| c.closed_after.is_none()).count();
    assert_eq!(never_closed, 0, "{never_closed} slow connections were still open after {GIVE_UP:?}");
    let at_once = slow.iter().filter(|c| c.closed_after.is_some_and(|d| d < TIMEOUT)).count();
    assert_eq!(at_once, SLOW - (CAP - 1), "the connections past the cap are closed at once, the others held");
    assert!(slow.iter().all(|c| !c.answer.contains("200 OK")), "a slow head was answered as a request");

    // The slow ones gone, a new client gets in.
    let v: Value = reqwest::Client::new().get(s.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["code"], 0);
}

#[tokio::test]
async fn slow_request_bodies_get_408_in_the_envelope_after_the_body_timeout_and_others_are_answered() {
    const SLOW: usize = 24;
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.body_read_timeout_secs = TIMEOUT.as_secs();
        // Fewer places than slow bodies: a body being read must not hold one.
        c.api.max_concurrent_requests = SLOW / 3;
    })
    .await;
    let client = reqwest::Client::new();
    let head = "POST /api/aicall/records/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"callType\":";
    let slow = slowloris(addr(&s), SLOW, head, b" ").await;
    all_answered(&dashboard(&s, &client, TIMEOUT * 2).await);
    let slow = slow.await.unwrap();

    for c in &slow {
        let after = c.closed_after.unwrap_or_else(|| panic!("a slow body was still open after {GIVE_UP:?}"));
        assert!(after >= TIMEOUT, "closed after {after:?}, before the body timeout");
        assert!(c.answer.starts_with("HTTP/1.1 408"), "{}", c.answer);
        let body = c.answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {}", c.answer));
        assert_eq!(v["code"], 408, "{v}");
        assert!(v["msg"].as_str().unwrap().contains("超时"), "{v}");
    }
}
