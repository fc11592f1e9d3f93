//! The OpenAPI document: valid, describing every route the router serves (and nothing
//! else) under each of its names, with the answers those routes really give.

use std::collections::{BTreeSet, HashSet};

use crate::common::{TestServer, venv};
use base64::Engine;
use serde_json::Value;

async fn document(s: &TestServer) -> Value {
    let res = s.get("/api/openapi.json").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// (path, lower-case method) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((path.clone(), method.clone(), op));
        }
    }
    ops
}

/// The operation's answer for `status`, with `$ref`s to shared responses followed.
fn response<'d>(doc: &'d Value, op: &'d Value, status: u16) -> Option<&'d Value> {
    let answer = op["responses"].get(status.to_string())?;
    match answer["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')),
        None => Some(answer),
    }
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_router_serves() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let served: BTreeSet<(String, String)> = callcenter::api::routes()
        .into_iter()
        .map(|(path, method)| (path.to_string(), method.as_str().to_lowercase()))
        .collect();
    let described: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(path, method, _)| (path, method)).collect();
    let undescribed: Vec<_> = served.difference(&described).collect();
    assert!(undescribed.is_empty(), "served but not in the document: {undescribed:?}");
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(unserved.is_empty(), "in the document but not served: {unserved:?}");
    // The spec's aliases are among them: the table is not just the canonical names.
    for alias in ["/aicall/stopTasks", "/aicall/api/calltype/uuid", "/recordings/files", "/metrics"] {
        assert!(served.iter().any(|(path, _)| path == alias), "{alias}");
    }

    let mut ids = HashSet::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice ({method} {path})");
    }

    // calltype/uuid takes its uuid from the query string.
    let params = doc["paths"]["/api/aicall/calltype/uuid"]["get"]["parameters"].as_array().unwrap();
    assert!(params.iter().any(|p| p["name"] == "uuid" && p["in"] == "query" && p["required"] == true));

    // The request and row schemas carry the spec's field names.
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("RecordListRequest", "callType"),
        ("RecordRow", "wavFileUrl"),
        ("TaskRowJson", "createtime"),
        ("TicketIn", "ticketContent"),
        ("StopRequest", "ticketNos"),
    ] {
        assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field} missing");
    }
    assert_eq!(schemas["TicketIn"]["required"].as_array().unwrap().len(), 5);
}

/// Every operation, asked the simplest way (an empty JSON object, or no query), answers
/// with a status it describes, in a media type described for that status; a JSON answer
/// is the envelope.
#[tokio::test]
async fn every_operation_answers_as_it_is_described() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    for (path, method, op) in operations(&doc) {
        let res = match method.as_str() {
            "post" => s.client.post(s.url(&path)).body("{}").send().await.unwrap(),
            _ => s.client.get(s.url(&path)).send().await.unwrap(),
        };
        let status = res.status().as_u16();
        let described = response(&doc, op, status)
            .unwrap_or_else(|| panic!("{method} {path} answered {status}, which it does not describe"));
        let media = res.headers()["content-type"].to_str().unwrap().split(';').next().unwrap().to_string();
        assert!(described["content"].get(&media).is_some(), "{method} {path}: {status} in {media}");
        // The document itself is the one JSON answer that is not an envelope.
        if media == "application/json" && path != "/api/openapi.json" {
            let v: Value = res.json().await.unwrap();
            assert!(v["code"].is_i64() && v["msg"].is_string(), "{method} {path}: {v}");
        }
    }
}

/// The operations that say they need a key are exactly those that answer 401 without
/// one, and each of the three schemes the document names lets a request in.
#[tokio::test]
async fn security_is_declared_exactly_where_a_key_is_asked_for() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.auth.api_keys = vec!["doc-key".into()];
    })
    .await;
    let doc = document(&s).await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        (&schemes["apiKey"]["in"], &schemes["apiKey"]["name"]),
        (&"header".into(), &"X-API-Key".into())
    );
    assert_eq!(schemes["basic"]["scheme"], "basic");
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("any-user:doc-key"));
    let presented = [
        ("authorization", "Bearer doc-key".to_string()),
        ("x-api-key", "doc-key".to_string()),
        ("authorization", basic),
    ];

    let mut secured = 0;
    for (path, method, op) in operations(&doc) {
        let request = || match method.as_str() {
            "post" => s.client.post(s.url(&path)).body("{}"),
            _ => s.client.get(s.url(&path)),
        };
        let declared: Vec<&str> = op["security"]
            .as_array()
            .map(|reqs| reqs.iter().flat_map(|r| r.as_object().unwrap().keys().map(String::as_str)).collect())
            .unwrap_or_default();
        let without = request().send().await.unwrap().status();
        if declared.is_empty() {
            assert_ne!(without, 401, "{method} {path} asks for a key but declares no security");
            continue;
        }
        secured += 1;
        assert_eq!(without, 401, "{method} {path} declares security but lets a request in without a key");
        assert!(response(&doc, op, 401).is_some(), "{method} {path}: its 401 is not described");
        assert_eq!(declared, ["bearer", "apiKey", "basic"], "{method} {path}");
        for (header, value) in &presented {
            let status = request().header(*header, value).send().await.unwrap().status();
            assert_ne!(status, 401, "{method} {path} refuses {header}");
        }
    }
    assert!(secured >= 12, "only {secured} operations need a key");
}

/// Every operation with a body describes the 413 it answers to one over the limit.
#[tokio::test]
async fn an_operation_with_a_body_describes_its_413() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.max_body_bytes = 4096;
    })
    .await;
    let doc = document(&s).await;
    let big = format!("[{}\"x\"]", "\"x\",".repeat(2000));
    let with_body = operations(&doc).into_iter().filter(|(_, _, op)| op.get("requestBody").is_some());
    for (path, method, op) in with_body {
        let (status, v) = s.post_raw(&path, big.clone()).await;
        assert_eq!((status.as_u16(), &v["code"]), (413, &413.into()), "{method} {path}: {v}");
        assert!(response(&doc, op, 413).is_some(), "{method} {path}: its 413 is not described");
    }
}

/// Every operation with a body describes the 408 it answers to a body that stops coming.
#[tokio::test]
async fn an_operation_with_a_body_describes_its_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.body_read_timeout_secs = 1;
    })
    .await;
    let doc = document(&s).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let with_body: Vec<_> =
        operations(&doc).into_iter().filter(|(_, _, op)| op.get("requestBody").is_some()).collect();
    // All at once: each waits out the body timeout.
    let answers = futures::future::join_all(with_body.iter().map(|(path, _, _)| {
        let addr = addr.clone();
        async move {
            let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{");
            conn.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            answer
        }
    }))
    .await;
    for ((path, method, op), answer) in with_body.iter().zip(answers) {
        assert!(answer.starts_with("HTTP/1.1 408"), "{method} {path}: {answer}");
        assert!(answer.contains("\"code\":408"), "{method} {path}: {answer}");
        assert!(response(&doc, op, 408).is_some(), "{method} {path}: its 408 is not described");
    }
}

/// The document as served passes an OpenAPI validator (fuzz/requirements.txt).
#[tokio::test]
async fn the_document_is_valid_openapi() {
    let validator = venv().join("bin/openapi-spec-validator");
    assert!(
        validator.exists(),
        "{} is missing: run scripts/setup, which installs fuzz/requirements.txt there",
        validator.display()
    );
    let s = TestServer::start().await;
    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, s.get("/api/openapi.json").await.bytes().await.unwrap()).unwrap();
    let out = tokio::process::Command::new(validator)
        .args(["--validation-errors", "all"])
        .arg(&file)
        .output()
        .await
        .expect("the validator runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim_end().ends_with("OK"), "the document is not valid:\n{text}");
}
