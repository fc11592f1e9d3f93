//! API keys: when set, every API and recording request needs one; when not, all is open.

use crate::common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_with(s: &TestServer, path: &str, header: Option<(&str, &str)>) -> (StatusCode, Value) {
    let mut req = s.client.post(s.url(path)).json(&json!({"callType": "02"}));
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn with_keys_set_a_request_without_a_valid_key_gets_401_in_the_envelope() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.auth.api_keys = vec!["k-one".into(), "k-two".into()];
    })
    .await;
    for header in [
        None,
        Some(("Authorization", "Bearer wrong")),
        Some(("X-API-Key", "k-on")),
        Some(("Authorization", "k-one")),
    ] {
        let (status, v) = post_with(&s, "/api/aicall/records/list", header).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(v["code"], 401);
        assert!(v["msg"].as_str().unwrap().contains("API 密钥"));
    }
    for path in ["/aicall/api/records/list", "/aicall/stopTasks"] {
        assert_eq!(post_with(&s, path, None).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    let res = s.get("/recordings/files?filename=ai_call/x.wav").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = s.get("/api/aicall/calltype/uuid?uuid=1").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_keys_set_either_header_with_any_key_is_let_in() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.auth.api_keys = vec!["k-one".into(), "k-two".into()];
    })
    .await;
    for header in [("Authorization", "Bearer k-one"), ("X-API-Key", "k-two"), ("x-api-key", "k-one")] {
        let (status, v) = post_with(&s, "/api/aicall/records/list", Some(header)).await;
        assert_eq!(status, StatusCode::OK, "{header:?}");
        assert_eq!(v["code"], 0);
    }
    // Health and metrics stay open for load balancers and scrapers.
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(s.get("/metrics").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_keys_the_api_is_open() {
    let s = TestServer::start().await;
    let (status, v) = post_with(&s, "/api/aicall/records/list", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["code"], 0);
}
