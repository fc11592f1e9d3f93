//! A corpus of hostile requests, each with the answer it must get: never a 5xx, never an
//! answer outside the envelope, and the server keeps serving.

mod common;

use common::{TestServer, ticket};
use reqwest::Method;
use serde_json::{Value, json};

/// What a request must get: the HTTP status and the envelope's code.
#[derive(Clone, Copy, Debug)]
struct Expect(u16, i64);

const OK: Expect = Expect(200, 0);
const BAD: Expect = Expect(200, 405);

struct Case {
    method: Method,
    path: String,
    body: Vec<u8>,
    expect: Expect,
}

fn post(path: &str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { method: Method::POST, path: path.into(), body: body.into(), expect }
}

fn get(path: &str, expect: Expect) -> Case {
    Case { method: Method::GET, path: path.into(), body: Vec::new(), expect }
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let object_endpoints = [
        "/api/aicall/records/list",
        "/api/aicall/calltask/list",
        "/api/aicall/stopTasks",
        "/api/aicall/dnc/add",
        "/api/aicall/dnc/list",
        "/api/aicall/stats",
    ];
    let array_endpoints = ["/api/aicall/createTasks", "/api/aicall/records/import"];
    // Bodies that are no request at all, for every endpoint.
    let nonsense: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"   ".to_vec(),
        b"null".to_vec(),
        b"true".to_vec(),
        b"12345678901234567890123".to_vec(),
        b"\"a string\"".to_vec(),
        b"{".to_vec(),
        b"{\"a\":}".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"{\"callType\":\"\xff\"}".to_vec(),
        b"{\"callType\":\"0\x012\"}".to_vec(),
        "[".repeat(100_000).into_bytes(),
        format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000)).into_bytes(),
        b"\xef\xbb\xbf{}".to_vec(),
    ];
    for path in object_endpoints.iter().chain(array_endpoints.iter()) {
        for body in &nonsense {
            cases.push(post(path, body.clone(), BAD));
        }
    }
    for path in object_endpoints {
        cases.push(post(path, "[]", BAD));
    }
    for path in array_endpoints {
        cases.push(post(path, "{}", BAD));
        cases.push(post(path, "[null]", BAD));
        cases.push(post(path, "[[1,2,3]]", BAD));
    }
    // Wrong types and out-of-range values, field by field.
    let records = "/api/aicall/records/list";
    for body in [
        json!({"callType": ["02"]}),
        json!({"callType": {"$ne": 1}}),
        json!({"callType": "02", "pageNum": -1}),
        json!({"callType": "02", "pageNum": 1e300}),
        json!({"callType": "02", "pageNum": "1e3"}),
        json!({"callType": "02", "pageSize": 9_223_372_036_854_775_807i64}),
        json!({"callType": "02", "pageSize": "0x10"}),
        json!({"callType": "02", "timeLenStart": "-5"}),
        json!({"callType": "02", "timeLenEnd": true}),
        json!({"callType": "02", "calloutTimeStart": "2025-02-30 00:00:00"}),
        json!({"callType": "02", "calloutTimeStart": "2025-08-16 24:00:00"}),
        json!({"callType": "02", "calloutTimeStart": "9999999-01-01 00:00:00"}),
        json!({"callType": "02", "calloutTimeEnd": "2025-08-16T00:00:00Z"}),
        json!({"callType": "02", "calloutTimeStart": 1755349919}),
        json!({"callType": "02", "uuid": {"a": 1}}),
        json!({"callType": "\u{202e}20"}),
    ] {
        cases.push(post(records, body.to_string(), BAD));
    }
    // Odd but valid: plain values that match nothing.
    for body in [
        json!({"callType": "02", "uuid": "\u{0}"}),
        json!({"callType": "02", "telephone": "'; DROP TABLE call_records; --"}),
        json!({"callType": "02", "extnum": "x".repeat(100_000)}),
        json!({"callType": "02", "uuid": "😀🔥"}),
        json!({"callType": "02", "pageNum": 2_000_000_000}),
        json!({"callType": "02", "calloutTimeStart": "1970-01-01 00:00:00", "calloutTimeEnd": "2999-12-31 23:59:59"}),
    ] {
        cases.push(post(records, body.to_string(), OK));
    }
    let tasks = "/api/aicall/calltask/list";
    for body in [
        json!({"pageNum": 1}),
        json!({"pageNum": 1, "pageSize": 10, "batchId": 1.5}),
        json!({"pageNum": 1, "pageSize": 10, "batchId": "99999999999999999999"}),
        json!({"pageNum": 1, "pageSize": 10, "status": "DROP"}),
        json!({"pageNum": 1, "pageSize": 10, "createTimeEnd": "yesterday"}),
    ] {
        cases.push(post(tasks, body.to_string(), BAD));
    }
    for body in [
        json!({"pageNum": 1, "pageSize": 10, "ticketNo": "\u{0}"}),
        json!({"pageNum": 1, "pageSize": 10, "phone": "\u{0}'"}),
        json!({"pageNum": "1", "pageSize": "10", "batchId": -1}),
    ] {
        cases.push(post(tasks, body.to_string(), OK));
    }
    let create = "/api/aicall/createTasks";
    let with = |field: &str, value: Value| {
        let mut t = ticket("H1", "13900000001");
        t[field] = value;
        json!([t]).to_string()
    };
    for (field, value) in [
        ("username", json!("a\u{0}b")),
        ("ticketContent", json!("\u{1b}[31m red")),
        ("ticketNo", json!("x".repeat(101))),
        ("ticketContent", json!("内".repeat(5001))),
        ("phone", json!("+")),
        ("phone", json!("1".repeat(21))),
        ("phone", json!("１３９１２３４５６７８")),
        ("phone", json!(true)),
        ("username", json!(["a"])),
        ("ticketType", json!({})),
    ] {
        cases.push(post(create, with(field, value), BAD));
    }
    cases.push(post(create, with("ticketContent", json!("第一行\n第二行\t制表")), OK));
    let stop = "/api/aicall/stopTasks";
    for body in [
        json!({"batchIds": [[1]]}),
        json!({"ticketNos": [{}]}),
        json!({"batchIds": [1.5]}),
        json!({"batchIds": {}}),
    ] {
        cases.push(post(stop, body.to_string(), BAD));
    }
    cases.push(post(stop, json!({"ticketNos": ["\u{0}"]}).to_string(), OK));
    cases.push(post(stop, json!({"batchIds": [i64::MAX, i64::MIN, 0]}).to_string(), OK));
    // Path traversal and other bad file names, raw and encoded.
    for name in [
        "../Cargo.toml",
        "..%2fCargo.toml",
        "%2e%2e%2fCargo.toml",
        "%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd",
        "ai_call/../../etc/passwd.wav",
        "ai_call/%00.wav",
        "C:%5cwindows%5cwin.ini",
        "ai_call/x.txt",
        "",
    ] {
        cases.push(get(&format!("/recordings/files?filename={name}"), BAD));
    }
    cases.push(get("/recordings/files?filename=%252e%252e%252fetc%252fpasswd.wav", Expect(404, 404)));
    cases.push(get("/recordings/files", BAD));
    cases.push(get("/api/aicall/calltype/uuid?uuid=%00", BAD));
    cases.push(get("/api/aicall/calltype/uuid?uuid=%ff%fe", BAD));
    cases.push(get("/api/aicall/calltype/uuid?uuid[]=1", BAD));
    cases.push(get("/nope/../../etc/passwd", Expect(404, 404)));
    cases.push(post("/api/aicall/records/list?callType=02", "{}", BAD));
    cases.push(post("/api/cdr/freeswitch", "cdr=%7B%22variables%22%3A%7B%7D%7D", BAD));
    cases.push(post("/api/cdr/freeswitch", "cdr=%ZZ", BAD));
    cases
}

#[tokio::test]
async fn every_hostile_request_gets_its_envelope_answer_and_the_server_keeps_serving() {
    let s = TestServer::start().await;
    s.create(&[ticket("KEEP", "13900000001")]).await;
    let cases = corpus();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let res = s
            .client
            .request(case.method.clone(), s.url(&case.path))
            .body(case.body.clone())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let shown = String::from_utf8_lossy(&case.body[..case.body.len().min(60)]).into_owned();
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if status == case.expect.0 && v["code"] == case.expect.1 && v["msg"].is_string() => {}
            _ => failures.push(format!(
                "{} {} [{shown}]: want {:?}, got {status} {text}",
                case.method, case.path, case.expect
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing hostile was written, and the server still serves.
    assert_eq!(s.tasks(json!({})).await["total"], 2, "the ticket kept, plus the one valid multi-line ticket");
}
