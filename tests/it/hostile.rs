//! A corpus of hostile requests, each with the answer it must get: never a 5xx, never an
//! answer outside the envelope, and the server keeps serving.

use crate::common::{TestServer, ticket};
use callcenter::domain::CallType;
use callcenter::store::CallRecord;
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
    let stats = "/api/aicall/stats";
    for date in ["262143-12-31", "+262144-01-01", "-262144-01-01", "2025-02-30", "99999999999-01-01"] {
        cases.push(post(stats, json!({ "date": date }).to_string(), BAD));
    }
    cases.push(post(stats, json!({"date": "9999-12-31"}).to_string(), OK));
    cases.extend(cdr_cases());
    cases.extend(import_cases());
    cases.extend(integer_bounds());
    cases
}

/// Past the ends of i64 and at them, as JSON numbers and as numeric strings.
const EDGES: [&str; 9] = [
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "99999999999999999999999",
    "1e19",
    "0",
    "-1",
];

const CDR: &str = "/api/cdr/freeswitch";

/// A FreeSWITCH CDR with these variables over a valid inbound call's.
fn cdr(changes: &[(&str, Value)]) -> String {
    let mut v = json!({
        "uuid": "6f1c3b52-8d8e-4a59-9f53-0f2d1e0c9a11",
        "caller_id_number": "18188888888",
        "destination_number": "8001",
        "start_epoch": "1755349919",
        "answer_epoch": "1755349921",
        "end_epoch": "1755349979",
        "hangup_cause": "NORMAL_CLEARING",
        "sip_term_status": "200"
    });
    for (key, value) in changes {
        v[*key] = value.clone();
    }
    json!({ "variables": v }).to_string()
}

fn cdr_cases() -> Vec<Case> {
    let mut cases = vec![
        // The crash: a time no calendar can show, stored and then fatal to every list.
        post(CDR, r#"{"variables":{"uuid":"x4","caller_id_number":"18612345678","start_epoch":"99999999999999"}}"#, BAD),
        post(CDR, cdr(&[("caller_id_number", json!("1861234\u{0}5678"))]), BAD),
        post(CDR, cdr(&[("caller_id_number", json!("\u{1b}[31m18612345678"))]), BAD),
        post(CDR, cdr(&[("caller_id_number", json!("anonymous")), ("destination_number", json!(""))]), BAD),
        post(CDR, cdr(&[("destination_number", json!("8".repeat(33)))]), BAD),
        post(CDR, cdr(&[("uuid", json!("a\u{0}b"))]), BAD),
        post(CDR, cdr(&[("uuid", json!("x".repeat(65)))]), BAD),
        post(CDR, cdr(&[("uuid", json!("../../etc/passwd"))]), BAD),
        post(CDR, cdr(&[("uuid", json!(5))]), BAD),
        post(CDR, cdr(&[("hangup_cause", json!("NORMAL\u{0}CLEARING"))]), BAD),
        post(CDR, cdr(&[("hangup_cause", json!("x".repeat(100)))]), BAD),
        post(CDR, cdr(&[("start_stamp", json!("9999-12-31 23:59:59")), ("start_epoch", json!(""))]), BAD),
        post(CDR, cdr(&[("start_epoch", json!("")), ("start_stamp", json!("1970-01-01 08:00:00"))]), BAD),
        post(CDR, r#"{"variables":{"uuid":"f1"},"callflow":"str"}"#, BAD),
        post(CDR, r#"{"variables":{"uuid":"f2"},"callflow":[1,{"caller_profile":[]}]}"#, BAD),
        // Odd but valid: a recording outside the directory is dropped, the call kept; a
        // FusionPBX CDR with its numbers in the callflow only.
        post(CDR, cdr(&[("uuid", json!("ok-1")), ("record_path", json!("../../etc/passwd.wav"))]), OK),
        post(
            CDR,
            json!({
                "variables": {"uuid": "ok-2", "start_epoch": "1755349919", "hangup_cause": "NORMAL_CLEARING"},
                "callflow": [{"caller_profile": {"caller_id_number": "18188888888", "destination_number": "4008001234"}}]
            })
            .to_string(),
            OK,
        ),
    ];
    // Every epoch field at and past the ends of i64: never stored, never a 5xx.
    for name in ["start", "answer", "end"] {
        for unit in ["epoch", "uepoch"] {
            for edge in EDGES.iter().filter(|e| !matches!(**e, "0" | "-1")) {
                cases.push(post(CDR, cdr(&[(&format!("{name}_{unit}"), json!(edge))]), BAD));
            }
        }
    }
    cases
}

const IMPORT: &str = "/api/aicall/records/import";

/// records/import with one record: a valid inbound call with these fields changed.
fn import(changes: &[(&str, Value)]) -> String {
    let mut r = json!({
        "uuid": "imp-1",
        "telephone": "18188888888",
        "callType": "01",
        "calloutTime": "2025-08-16 21:11:59",
        "answeredTime": "2025-08-16 21:12:01",
        "callEndTime": "2025-08-16 21:12:59",
        "hangupCause": "NORMAL_CLEARING:sip:200",
        "extnum": "8001",
        "dialogue": [{"role": "user", "content": "你好"}]
    });
    for (key, value) in changes {
        r[*key] = value.clone();
    }
    json!([r]).to_string()
}

fn import_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (field, value) in [
        ("calloutTime", json!("1970-01-01 08:00:00")),
        ("calloutTime", json!("1999-12-31 23:59:59")),
        ("callEndTime", json!("9999-12-31 23:59:59")),
        ("callEndTime", json!("2099-01-01 00:00:00")),
        ("answeredTime", json!("+275760-09-13 00:00:00")),
        ("calloutTime", json!(1755349919)),
        ("telephone", json!("1818888\u{0}8888")),
        ("telephone", json!("\u{1b}[2J18188888888")),
        ("telephone", json!("not a number")),
        ("telephone", json!(-9223372036854775808i64)),
        ("telephone", json!(1e300)),
        ("uuid", json!("a\u{0}b")),
        ("uuid", json!("with space")),
        ("uuid", json!("u".repeat(65))),
        ("hangupCause", json!("hung up")),
        ("hangupCause", json!("NORMAL_CLEARING:sip:99999")),
        ("extnum", json!("80\u{1b}01")),
        ("extnum", json!("8".repeat(33))),
        ("wavFileUrl", json!("http://x/\u{0}.wav")),
        ("dialogue", json!([{"role": "system", "content": "x"}])),
        ("dialogue", json!([{"role": "user", "content": "\u{0}"}])),
    ] {
        cases.push(post(IMPORT, import(&[(field, value)]), BAD));
    }
    // A number where the phone belongs is taken as its digits, as createTasks does.
    cases.push(post(IMPORT, import(&[("uuid", json!("imp-2")), ("telephone", json!(i64::MAX))]), OK));
    cases.push(post(IMPORT, import(&[("uuid", json!("imp-3")), ("telephone", json!(u64::MAX))]), OK));
    cases.push(post(
        IMPORT,
        import(&[("uuid", json!("imp-4")), ("hangupCause", json!("ORIGINATOR_CANCEL"))]),
        OK,
    ));
    cases
}

/// Every integer field of every route at and past the ends of i64, as a number and as a
/// string: a 405 or a plain answer, never a 5xx or an overflow.
fn integer_bounds() -> Vec<Case> {
    type Fits = fn(i128) -> bool;
    let any: Fits = |_| true;
    let page_num: Fits = |n| (1..=i128::from(u32::MAX)).contains(&n);
    let page_size: Fits = |n| (1..=1000).contains(&n);
    let not_negative: Fits = |n| n >= 0;
    let fields: [(&str, Value, &str, Fits); 10] = [
        ("/api/aicall/records/list", json!({"callType": "02"}), "pageNum", page_num),
        ("/api/aicall/records/list", json!({"callType": "02"}), "pageSize", page_size),
        ("/api/aicall/records/list", json!({"callType": "02"}), "timeLenStart", not_negative),
        ("/api/aicall/records/list", json!({"callType": "02"}), "timeLenEnd", not_negative),
        ("/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 10}), "pageNum", page_num),
        ("/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 10}), "pageSize", page_size),
        ("/api/aicall/calltask/list", json!({"pageNum": 1, "pageSize": 10}), "batchId", any),
        ("/api/aicall/dnc/list", json!({}), "pageNum", page_num),
        ("/api/aicall/dnc/list", json!({}), "pageSize", page_size),
        ("/api/aicall/stopTasks", json!({}), "batchIds", any),
    ];
    let mut cases = Vec::new();
    for (path, base, field, fits) in fields {
        for edge in EDGES {
            let value: Option<i128> = edge.parse().ok().filter(|n| i64::try_from(*n).is_ok());
            let expect = if value.is_some_and(fits) { OK } else { BAD };
            let number: Value = serde_json::from_str(edge).unwrap();
            for v in [number, json!(edge)] {
                let mut body = base.clone();
                body[field] = if field == "batchIds" { json!([v]) } else { v };
                cases.push(post(path, body.to_string(), expect));
            }
        }
    }
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

/// A call record as a store holds it, the way no request can write it any more.
fn stored_record(uuid: &str, call_type: CallType, callout_ms: i64) -> CallRecord {
    CallRecord {
        uuid: uuid.into(),
        call_type,
        batch_id: None,
        telephone: "18612345678".into(),
        extnum: None,
        callout_ms,
        answered_ms: None,
        ended_ms: callout_ms,
        time_len: 0,
        hangup_cause: "NORMAL_CLEARING:null".into(),
        wav_path: String::new(),
        wav_url: String::new(),
        dialogue_json: "[]".into(),
        intent: String::new(),
        turn_latency_ms: None,
        batch_name: None,
    }
}

#[tokio::test]
async fn a_stored_time_no_calendar_can_show_fails_its_list_with_a_500_envelope_and_spares_the_rest() {
    let s = TestServer::start().await;
    // Rows an older version let in: one past the calendar's end (inbound), one valid
    // (manual outbound).
    let store = callcenter::store::connect(&s.db.url, Default::default()).await.unwrap();
    let past_the_calendar = 8_300_000_000_000_000;
    store
        .import_records(&[
            stored_record("old-bad", CallType::Inbound, past_the_calendar),
            stored_record("old-good", CallType::ManualOutbound, 1_755_349_919_000),
        ])
        .await
        .unwrap();
    let (status, v) = s.post_status("/api/aicall/records/list", &json!({"callType": "01"})).await;
    assert_eq!((status.as_u16(), v["code"].as_i64()), (200, Some(500)), "an answer, not a reset: {v}");
    assert_eq!(v["msg"], "系统异常，请稍后重试");
    // A page that does not hold the row, and the other call types, answer as ever.
    let v = s.post("/api/aicall/records/list", &json!({"callType": "01", "uuid": "none"})).await;
    assert_eq!(v["code"], 0, "{v}");
    let v = s.post("/api/aicall/records/list", &json!({"callType": "03"})).await;
    assert_eq!((v["code"].as_i64(), v["total"].as_i64()), (Some(0), Some(1)), "{v}");
    assert_eq!(v["rows"][0]["calloutTime"], "2025-08-16 21:11:59");
}

#[tokio::test]
async fn the_cdr_that_crashed_records_list_is_refused_naming_its_field_and_inbound_calls_still_list() {
    let s = TestServer::start().await;
    let (_, v) = s
        .post_raw(
            CDR,
            r#"{"variables":{"uuid":"x4","caller_id_number":"18612345678","start_epoch":"99999999999999"}}"#,
        )
        .await;
    assert_eq!(v["code"], 405, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("variables.start_epoch"), "{v}");
    for start in ["start_uepoch", "start_epoch"] {
        let (_, v) = s.post_raw(CDR, cdr(&[(start, json!(i64::MAX.to_string()))])).await;
        assert!(v["msg"].as_str().unwrap().contains(start), "{start}: {v}");
    }
    let (_, v) = s.post_raw(CDR, cdr(&[])).await;
    assert_eq!(v["code"], 0, "a valid CDR is taken: {v}");
    let v = s.post("/api/aicall/records/list", &json!({"callType": "01"})).await;
    assert_eq!((v["code"].as_i64(), v["total"].as_i64()), (Some(0), Some(1)), "{v}");
    assert_eq!(v["rows"][0]["calloutTime"], "2025-08-16 21:11:59");
}

#[tokio::test]
async fn an_oversized_cdr_gets_413_in_the_envelope() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.api.max_body_bytes = 4096;
    })
    .await;
    let (status, v) = s.post_raw(CDR, format!("cdr={}", "x".repeat(10_000))).await;
    assert_eq!((status.as_u16(), v["code"].as_i64()), (413, Some(413)), "{v}");
}
