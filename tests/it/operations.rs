//! What an ops team runs it with: health, metrics, limits, CORS, and SQL that stays data.

use std::time::Duration;

use crate::common::{TestServer, hold_writes, ticket, until};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn healthz_says_alive_and_readyz_checks_database_and_dialer() {
    let s = TestServer::start_with(|_| {}).await;
    let v: Value = s.get("/healthz").await.json().await.unwrap();
    assert_eq!(v["code"], 0);
    // The dialer starts right after the server: wait for it, as a load balancer would.
    let ready = until(Duration::from_secs(10), "the server to say ready", async || {
        let res = s.get("/readyz").await;
        let status = res.status();
        let ready: Value = res.json().await.unwrap();
        (status == StatusCode::OK).then_some(ready)
    })
    .await;
    assert_eq!(ready["code"], 0, "{ready}");
    assert_eq!(ready["data"], json!({"database": "ok", "dialer": "running", "recordings": "ok"}));

    let api_only = TestServer::start().await;
    let v: Value = api_only.get("/readyz").await.json().await.unwrap();
    assert_eq!(v["data"]["dialer"], "disabled");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_envelope_code_and_calls_by_outcome() {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    s.post("/api/aicall/records/list", &json!({"callType": "09"})).await;
    s.create(&[ticket("M1", "13900000001"), ticket("M2", "13900004860")]).await;
    s.wait_tasks(Duration::from_secs(10), |rows| rows.iter().all(|t| !t["lastHangupCause"].is_null())).await;
    let res = s.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        r#"http_requests_total{route="/api/aicall/records/list",method="POST",code="405"}"#,
        r#"http_requests_total{route="/api/aicall/createTasks",method="POST",code="0"}"#,
        "http_request_duration_seconds_bucket",
        "callcenter_calls_started_total",
        r#"callcenter_call_attempts_ended_total{class="answered"}"#,
        r#"callcenter_call_attempts_ended_total{class="busy"}"#,
        "callcenter_answer_rate",
        "callcenter_call_talk_seconds",
        "callcenter_dialer_pacing_delay_seconds",
        "callcenter_calls_in_progress",
        "callcenter_tasks_waiting",
        r#"callcenter_db_pool_connections{state="open"}"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

/// Asks `path` until it is refused with 503 (the envelope's answer), for at most `within`.
async fn refused(s: &TestServer, path: &str, body: Value, within: Duration) -> Value {
    until(within, &format!("{path} to be refused past the cap"), async || {
        let (status, v) = s.post_status(path, &body).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(v)
    })
    .await
}

#[tokio::test]
async fn past_the_concurrency_cap_requests_are_refused_at_once_with_503_in_the_envelope() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.max_concurrent_requests = 1;
    })
    .await;
    // A write waiting on a busy database holds the one place...
    let hold = Duration::from_secs(2);
    let lock = hold_writes(&s.db, hold).await;
    let slow = tokio::spawn(
        s.client.post(s.url("/api/aicall/dnc/add")).json(&json!({"phones": ["13900000001"]})).send(),
    );
    // ...so another request is refused at once while it lasts.
    let v = refused(&s, "/api/aicall/records/list", json!({"callType": "02"}), hold / 2).await;
    assert_eq!(v["code"], 500);
    assert!(v["msg"].as_str().unwrap().contains("繁忙"), "{v}");
    lock.await.unwrap();
    let first: Value = slow.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(first["code"], 0, "the request that held the place is served: {first}");
    let (status, _) = s.post_status("/api/aicall/records/list", &json!({"callType": "02"})).await;
    assert_eq!(status, StatusCode::OK, "and the place is free again");
}

#[tokio::test]
async fn invented_methods_fold_into_one_metric_label() {
    let s = TestServer::start().await;
    for method in ["FOOBAR", "BREW", "X-ANY-1", "X-ANY-2"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = s.client.request(method, s.url("/api/aicall/records/list")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let text = s.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{route="/api/aicall/records/list",method="other",code="405"}"#),
        "{text}"
    );
    for invented in ["FOOBAR", "BREW", "X-ANY"] {
        assert!(!text.contains(&format!("method=\"{invented}")), "{invented} became a label:\n{text}");
    }
}

#[tokio::test]
async fn the_concurrency_cap_is_one_for_the_whole_server_not_one_per_route() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.max_concurrent_requests = 2;
    })
    .await;
    // Two requests on two routes, waiting on a busy database, take the server's two places...
    let hold = Duration::from_secs(2);
    let lock = hold_writes(&s.db, hold).await;
    let slow = [
        ("/api/aicall/dnc/add", json!({"phones": ["13900000001"]})),
        ("/api/aicall/dnc/remove", json!({"phones": ["13900000002"]})),
    ]
    .map(|(path, body)| tokio::spawn(s.client.post(s.url(path)).json(&body).send()));
    // ...so a third route, which needs no write, is refused while they last.
    let v = refused(&s, "/api/aicall/records/list", json!({"callType": "02"}), hold / 2).await;
    assert_eq!(v["code"], 500);
    lock.await.unwrap();
    for request in slow {
        let v: Value = request.await.unwrap().unwrap().json().await.unwrap();
        assert_eq!(v["code"], 0, "{v}");
    }
    let (status, _) = s.post_status("/api/aicall/records/list", &json!({"callType": "02"})).await;
    assert_eq!(status, StatusCode::OK, "the places are free again");
}

#[tokio::test]
async fn a_request_past_the_timeout_gets_503_in_the_envelope() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.request_timeout_secs = 1;
    })
    .await;
    let lock = hold_writes(&s.db, Duration::from_millis(2500)).await;
    let (status, v) = s.post_status("/api/aicall/dnc/add", &json!({"phones": ["13900000001"]})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], 500);
    assert!(v["msg"].as_str().unwrap().contains("超时"), "{v}");
    lock.await.unwrap();
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.server.cors_origins = vec!["https://dash.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/api/aicall/records/list"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let ok = preflight("https://dash.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://dash.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn sql_injection_strings_in_every_string_filter_are_plain_values() {
    let s = TestServer::start_with(|c| c.sim.answer_rate = 1.0).await;
    s.create(&[ticket("T1", "13900000001")]).await;
    s.wait_all_ended(Duration::from_secs(10)).await;
    let hostile = [
        "' OR '1'='1",
        "1; DROP TABLE tasks; --",
        "\" OR 1=1 --",
        "') OR ('a'='a",
        "%' OR 1=1 --",
        "1 UNION SELECT * FROM call_records --",
        "'; DELETE FROM call_records; --",
        "\\'; SELECT pg_sleep(5); --",
    ];
    for h in hostile {
        for field in ["uuid", "telephone", "extnum"] {
            let v = s.records(json!({ field: h })).await;
            assert_eq!(v["total"], 0, "{field}={h}");
        }
        for field in ["ticketNo", "phone"] {
            let v = s.tasks(json!({ field: h })).await;
            assert_eq!(v["total"], 0, "{field}={h}");
        }
        let v = s.post("/api/aicall/records/list", &json!({"callType": "02", "calloutTimeStart": h})).await;
        assert_eq!(v["code"], 405);
        let v =
            s.post("/api/aicall/calltask/list", &json!({"pageNum": 1, "pageSize": 10, "status": h})).await;
        assert_eq!(v["code"], 405);
        let v = s.post("/api/aicall/stopTasks", &json!({"ticketNos": [h]})).await;
        assert_eq!(v["msg"], "已停止 0 个任务", "{h}");
        let v: Value =
            s.get(&format!("/api/aicall/calltype/uuid?uuid={}", urlencode(h))).await.json().await.unwrap();
        assert_eq!(v["code"], 405);
    }
    // A ticket may itself hold such text: it is stored and shown as written.
    let nasty = ticket("'; DROP TABLE tasks; --", "13900000002");
    s.create(&[nasty]).await;
    let v = s.tasks(json!({"ticketNo": "'; DROP TABLE tasks; --"})).await;
    assert_eq!(v["total"], 1);
    assert_eq!(s.tasks(json!({})).await["total"], 2, "nothing was dropped");
    assert!(s.records(json!({})).await["total"].as_i64().unwrap() >= 1);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The binary itself, on a SQLite file of its own.
mod own_database {
    use super::*;

    /// Requests a burst makes of the binary below.
    const BURST: usize = 2000;

    /// Runs the binary with `log.format = format`, sends it a burst of records/list
    /// requests 32 at a time, stops it with SIGTERM and returns its log.
    async fn log_of_a_burst(format: &str) -> String {
        let server = crate::common::BinaryServer::start(&[("LOG__FORMAT", format.to_string())]).await;
        let client = reqwest::Client::new();
        let body = json!({"callType": "02", "pageNum": 1, "pageSize": 10});
        use futures::StreamExt;
        let answers: Vec<StatusCode> = futures::stream::iter(0..BURST)
            .map(|_| {
                let req = client.post(server.url("/api/aicall/records/list")).json(&body);
                async move { req.send().await.unwrap().status() }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        assert!(answers.iter().all(|s| s.is_success()));
        server.stop()
    }

    /// Every request leaves its JSON access line, with the method and path, and a SIGTERM
    /// writes out every line still queued before the process exits.
    #[tokio::test]
    async fn every_request_of_a_burst_is_in_the_json_log_after_a_sigterm() {
        let text = log_of_a_burst("json").await;
        let lines: Vec<Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        let access = lines
            .iter()
            .filter(|l| l["fields"]["message"] == "finished processing request")
            .filter(|l| l["span"]["method"] == "POST" && l["span"]["uri"] == "/api/aicall/records/list")
            .count();
        assert_eq!(access, BURST, "one access line per request");
        assert_eq!(lines.last().unwrap()["fields"]["message"], "stopped", "the last line is the stop");
    }

    /// Text logs written to a file (or a journal) are plain text: no terminal colour codes.
    #[tokio::test]
    async fn text_logs_to_a_file_are_plain_and_whole() {
        let text = log_of_a_burst("text").await;
        let head: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(!text.contains('\x1b'), "colour codes in a file:\n{head}");
        let access = text
            .lines()
            .filter(|l| {
                l.contains("finished processing request") && l.contains("uri=/api/aicall/records/list")
            })
            .count();
        assert_eq!(access, BURST, "one access line per request");
        let last = text.lines().last().unwrap_or_default();
        assert!(last.ends_with("stopped"), "the last line is the stop: {last}");
    }
}
