//! The four /api/aicall endpoints, black-box, exactly to the spec and the settled contract.

use crate::common::{TestServer, ticket};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn spec_tickets() -> Value {
    json!([
        {"ticketNo": "T20231001001", "phone": "13912345678", "username": "张三", "ticketType": "活动通知1",
         "ticketContent": "尊敬的张三先生，提醒您参加我们本周末的线下优惠活动。"},
        {"ticketNo": "T20231001002", "phone": "13912345698", "username": "李四", "ticketType": "活动通知2",
         "ticketContent": "尊敬的李四先生，提醒您参加我们本周末的线下优惠活动。"}
    ])
}

fn assert_bad(v: &Value, needle: &str) {
    assert_eq!(v["code"], 405, "{v}");
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message `{msg}` should mention `{needle}`");
}

#[tokio::test]
async fn the_spec_create_example_answers_batch_ids_from_10001_in_input_order() {
    let s = TestServer::start().await;
    let v = s.post("/api/aicall/createTasks", &spec_tickets()).await;
    assert_eq!(
        v,
        json!({"code": 0, "msg": "任务创建成功", "data": [
            {"batchId": 10001, "ticketNo": "T20231001001"},
            {"batchId": 10002, "ticketNo": "T20231001002"}
        ]})
    );
}

#[tokio::test]
async fn the_spec_task_list_example_returns_the_spec_row_shape() {
    let s = TestServer::start().await;
    let before = chrono::Utc::now().timestamp_millis();
    // The spec's tickets, in the campaign its list example asks for.
    let mut tickets = spec_tickets();
    for t in tickets.as_array_mut().unwrap() {
        t["batchName"] = json!("九月份营销活动");
    }
    s.post("/api/aicall/createTasks", &tickets).await;
    // The spec's own example, with its `batchName` and a date range around now.
    let v = s
        .post(
            "/api/aicall/calltask/list",
            &json!({"pageNum": 1, "pageSize": 10, "batchId": 10001, "batchName": "九月份营销活动",
                    "createTimeStart": "2000-01-01 00:00:00", "createTimeEnd": "2999-12-31 23:59:59"}),
        )
        .await;
    assert_eq!(v["code"], 0);
    assert_eq!(v["msg"], "操作成功");
    assert_eq!(v["total"], 1);
    let row = &v["rows"][0];
    let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "batchId",
        "taskType",
        "createtime",
        "stopTime",
        "connected",
        "ticketNo",
        "phone",
        "username",
        "ticketType",
        "ticketContent",
        "status",
        "callCount",
        "lastHangupCause",
        "batchName",
    ] {
        assert!(keys.contains(&k), "missing {k} in {row}");
    }
    assert_eq!(row["batchName"], "九月份营销活动");
    assert_eq!(row["batchId"], 10001);
    assert_eq!(row["taskType"], 1);
    assert!(row["createtime"].as_i64().unwrap() >= before - 1000);
    assert_eq!(row["stopTime"], Value::Null);
    assert_eq!(row["connected"], false);
    assert_eq!(row["ticketNo"], "T20231001001");
    assert_eq!(row["phone"], "13912345678");
    assert_eq!(row["username"], "张三");
    assert_eq!(row["ticketType"], "活动通知1");
    assert_eq!(row["status"], "待呼叫");
    assert_eq!(row["callCount"], 0);
    assert_eq!(row["lastHangupCause"], Value::Null);
}

#[tokio::test]
async fn every_route_answers_under_each_of_its_aliases() {
    let s = TestServer::start().await;
    for prefix in ["/api/aicall", "/aicall/api"] {
        let v = s.post(&format!("{prefix}/records/list"), &json!({"callType": "02"})).await;
        assert_eq!(v["code"], 0, "{prefix}");
        let v = s.post(&format!("{prefix}/calltask/list"), &json!({"pageNum": 1, "pageSize": 5})).await;
        assert_eq!(v["code"], 0, "{prefix}");
        let v = s
            .post(&format!("{prefix}/createTasks"), &json!([ticket(&format!("A{prefix}"), "13900000001")]))
            .await;
        assert_eq!(v["code"], 0, "{prefix}");
    }
    for path in ["/api/aicall/stopTasks", "/aicall/stopTasks", "/aicall/api/stopTasks"] {
        let v = s.post(path, &json!({"batchIds": [10001]})).await;
        assert_eq!(v["code"], 0, "{path}: {v}");
        assert_eq!(v["data"], Value::Null);
    }
}

#[tokio::test]
async fn records_list_of_an_empty_store_is_an_empty_first_page() {
    let s = TestServer::start().await;
    for t in ["01", "02", "03"] {
        let v = s.post("/api/aicall/records/list", &json!({"callType": t})).await;
        assert_eq!(v, json!({"code": 0, "msg": "操作成功", "total": 0, "rows": []}));
    }
}

#[tokio::test]
async fn a_ticket_retried_while_its_task_is_open_creates_nothing_new() {
    let s = TestServer::start().await;
    let first = s.create(&[ticket("T1", "13900000001"), ticket("T2", "13900000002")]).await;
    // The ticketing system timed out and sends the same request again, plus one new ticket.
    let again = s
        .create(&[ticket("T2", "13900000002"), ticket("T1", "13900000001"), ticket("T3", "139000003")])
        .await;
    assert_eq!(again, vec![first[1], first[0], 10003]);
    assert_eq!(s.tasks(json!({})).await["total"], 3);
}

#[tokio::test]
async fn a_ticket_whose_task_has_ended_can_be_called_again() {
    let s = TestServer::start().await;
    let first = s.create(&[ticket("T1", "13900000001")]).await;
    s.post("/api/aicall/stopTasks", &json!({"batchIds": first})).await;
    let second = s.create(&[ticket("T1", "13900000001")]).await;
    assert_ne!(first, second);
    assert_eq!(second, vec![10002]);
}

#[tokio::test]
async fn the_same_ticket_twice_in_one_request_is_rejected_whole() {
    let s = TestServer::start().await;
    let v = s
        .post("/api/aicall/createTasks", &json!([ticket("T1", "13900000001"), ticket("T1", "13900000002")]))
        .await;
    assert_bad(&v, "ticketNo");
    assert_bad(&v, "第 2 条");
    assert_eq!(s.tasks(json!({})).await["total"], 0);
}

#[tokio::test]
async fn one_bad_ticket_rejects_the_request_naming_its_index_and_field() {
    let s = TestServer::start().await;
    let cases = [
        ("phone", json!("139abc45678"), "phone"),
        ("phone", json!("1234"), "phone"),
        ("username", json!("   "), "username 不能为空"),
        ("ticketType", json!(""), "ticketType 不能为空"),
        ("ticketContent", Value::Null, "ticketContent 不能为空"),
        ("ticketNo", json!({"a": 1}), "ticketNo"),
    ];
    for (field, value, needle) in cases {
        let mut bad = ticket("T3", "13900000003");
        bad[field] = value.clone();
        let body = json!([ticket("T1", "13900000001"), ticket("T2", "13900000002"), bad]);
        let v = s.post("/api/aicall/createTasks", &body).await;
        assert_bad(&v, needle);
        assert!(v["msg"].as_str().unwrap().contains("第 3 条"), "{field}={value}: {v}");
    }
    let mut missing = ticket("T9", "13900000009");
    missing.as_object_mut().unwrap().remove("phone");
    assert_bad(&s.post("/api/aicall/createTasks", &json!([missing])).await, "phone 不能为空");
    assert_eq!(s.tasks(json!({})).await["total"], 0, "nothing may be written");
}

#[tokio::test]
async fn create_tasks_bounds_the_number_of_tickets() {
    let s = TestServer::start().await;
    assert_bad(&s.post("/api/aicall/createTasks", &json!([])).await, "不能为空");
    let many: Vec<Value> = (0..1001).map(|i| ticket(&format!("T{i}"), "13900000001")).collect();
    assert_bad(&s.post("/api/aicall/createTasks", &json!(many)).await, "1000");
    let max: Vec<Value> = (0..1000).map(|i| ticket(&format!("T{i}"), "13900000001")).collect();
    assert_eq!(s.create(&max).await.len(), 1000);
}

#[tokio::test]
async fn phones_may_have_a_plus_and_surrounding_spaces_are_trimmed() {
    let s = TestServer::start().await;
    s.create(&[ticket("T1", " +8613912345678 "), ticket("T2", "12345")]).await;
    let rows = s.tasks(json!({})).await["rows"].clone();
    assert_eq!(rows[1]["phone"], "+8613912345678");
    assert_eq!(rows[0]["phone"], "12345");
}

#[tokio::test]
async fn bad_bodies_get_the_envelope_with_405_and_a_readable_message() {
    let s = TestServer::start().await;
    let cases: Vec<(&str, &str, &str)> = vec![
        ("/api/aicall/records/list", "{\"callType\":", "不是合法的 JSON"),
        ("/api/aicall/records/list", "", "不能为空"),
        ("/api/aicall/records/list", "[1, 2]", "JSON 对象"),
        ("/api/aicall/records/list", "[{\"callType\":\"02\"}]", "JSON 对象"),
        ("/api/aicall/records/list", "\"02\"", "JSON 对象"),
        ("/api/aicall/records/list", "{\"callType\":\"02\"} trailing", "不是合法的 JSON"),
        ("/api/aicall/records/list", "{\"callType\":\"02\",\"pageNum\":\"abc\"}", "pageNum 应为整数"),
        ("/api/aicall/records/list", "{\"callType\":\"02\",\"pageSize\":1.5}", "pageSize 应为整数"),
        ("/api/aicall/records/list", "{\"callType\":\"02\",\"timeLenStart\":[1]}", "timeLenStart"),
        ("/api/aicall/records/list", "{\"callType\":\"02\",\"pageNum\":99999999999999999999}", "pageNum"),
        (
            "/api/aicall/calltask/list",
            "{\"pageNum\":1,\"pageSize\":10,\"batchId\":\"x1\"}",
            "batchId 应为整数",
        ),
        ("/api/aicall/createTasks", "{\"ticketNo\":\"T1\"}", "JSON 数组"),
        ("/api/aicall/createTasks", "[[\"T1\",\"13900000001\",\"a\",\"b\",\"c\"]]", "第 1 条工单"),
        ("/api/aicall/createTasks", "[1]", "JSON 对象"),
        ("/api/aicall/stopTasks", "{\"batchIds\":\"10001\"}", "batchIds"),
        ("/api/aicall/stopTasks", "{\"batchIds\":[\"abc\"]}", "batchIds"),
        ("/api/aicall/stopTasks", "[10001]", "JSON 对象"),
    ];
    for (path, body, needle) in cases {
        let (status, v) = s.post_raw(path, body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{path} {body}");
        assert_bad(&v, needle);
    }
}

#[tokio::test]
async fn records_list_checks_call_type_dates_paging_and_durations() {
    let s = TestServer::start().await;
    let cases = [
        (json!({}), "callType 不能为空"),
        (json!({"callType": "04"}), "callType 应为 01、02 或 03"),
        (json!({"callType": "01,02"}), "callType"),
        (json!({"callType": 2}), "callType"),
        (
            json!({"callType": "02", "calloutTimeStart": "2025-13-45 25:00:00"}),
            "calloutTimeStart 格式应为 yyyy-MM-dd HH:mm:ss",
        ),
        (
            json!({"callType": "02", "calloutTimeEnd": "2025-08-16"}),
            "calloutTimeEnd 格式应为 yyyy-MM-dd HH:mm:ss",
        ),
        (
            json!({"callType": "02", "calloutTimeStart": "2025-08-17 00:00:00", "calloutTimeEnd": "2025-08-16 00:00:00"}),
            "不能晚于",
        ),
        (json!({"callType": "02", "pageSize": 0}), "pageSize 应在 1 到 1000 之间"),
        (json!({"callType": "02", "pageSize": 100000}), "pageSize 应在 1 到 1000 之间"),
        (json!({"callType": "02", "pageNum": 0}), "pageNum"),
        (json!({"callType": "02", "pageNum": -3}), "pageNum"),
        (json!({"callType": "02", "timeLenStart": -1}), "timeLenStart 不能为负数"),
        (json!({"callType": "02", "timeLenStart": 10, "timeLenEnd": 5}), "timeLenStart"),
    ];
    for (body, needle) in cases {
        assert_bad(&s.post("/api/aicall/records/list", &body).await, needle);
    }
}

#[tokio::test]
async fn calltask_list_requires_paging_and_checks_its_filters() {
    let s = TestServer::start().await;
    let cases = [
        (json!({}), "pageNum 不能为空"),
        (json!({"pageNum": 1}), "pageSize 不能为空"),
        (json!({"pageNum": 1, "pageSize": 1001}), "pageSize"),
        (json!({"pageNum": 1, "pageSize": 10, "createTimeStart": "2023/09/01"}), "createTimeStart 格式应为"),
        (json!({"pageNum": 1, "pageSize": 10, "status": "done"}), "status 应为"),
    ];
    for (body, needle) in cases {
        assert_bad(&s.post("/api/aicall/calltask/list", &body).await, needle);
    }
}

#[tokio::test]
async fn integers_may_arrive_as_numeric_strings_and_blank_filters_mean_none() {
    let s = TestServer::start().await;
    s.create(&[ticket("T1", "13900000001"), ticket("T2", "13900000002")]).await;
    let v = s
        .post(
            "/api/aicall/calltask/list",
            &json!({"pageNum": "1", "pageSize": "1", "batchId": "", "ticketNo": "", "phone": " ",
                    "createTimeStart": "", "status": ""}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["total"], 2);
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    let v = s.post("/api/aicall/records/list", &json!({"callType": "02", "uuid": "", "pageNum": "2"})).await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test]
async fn calltask_list_pages_newest_batch_first_and_filters_by_each_field() {
    let s = TestServer::start().await;
    let tickets: Vec<Value> =
        (1..=25).map(|i| ticket(&format!("T{i:02}"), &format!("1390000{i:04}"))).collect();
    s.create(&tickets).await;
    let page = |n: i64| json!({"pageNum": n, "pageSize": 10});
    let p1 = s.post("/api/aicall/calltask/list", &page(1)).await;
    let p3 = s.post("/api/aicall/calltask/list", &page(3)).await;
    let p4 = s.post("/api/aicall/calltask/list", &page(4)).await;
    assert_eq!(p1["total"], 25);
    let ids = |v: &Value| {
        v["rows"].as_array().unwrap().iter().map(|r| r["batchId"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), (10016..=10025).rev().collect::<Vec<_>>());
    assert_eq!(ids(&p3), (10001..=10005).rev().collect::<Vec<_>>());
    assert!(ids(&p4).is_empty());
    assert_eq!(p4["total"], 25);

    assert_eq!(ids(&s.tasks(json!({"batchId": 10007})).await), vec![10007]);
    assert_eq!(ids(&s.tasks(json!({"ticketNo": "T03"})).await), vec![10003]);
    assert_eq!(ids(&s.tasks(json!({"phone": "13900000004"})).await), vec![10004]);
    assert_eq!(s.tasks(json!({"status": "待呼叫"})).await["total"], 25);
    assert_eq!(s.tasks(json!({"status": "已完成"})).await["total"], 0);
    // Created just now: inside a range around today, outside one in the past.
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let day = now.format("%Y-%m-%d").to_string();
    let today =
        json!({"createTimeStart": format!("{day} 00:00:00"), "createTimeEnd": format!("{day} 23:59:59")});
    assert_eq!(s.tasks(today).await["total"], 25);
    let past = json!({"createTimeStart": "2023-09-01 00:00:00", "createTimeEnd": "2023-09-30 23:59:59"});
    assert_eq!(s.tasks(past).await["total"], 0);
}

#[tokio::test]
async fn stop_tasks_stops_waiting_tasks_by_batch_id_or_ticket_no_and_is_idempotent() {
    let s = TestServer::start().await;
    let ids = s
        .create(&[ticket("T1", "13900000001"), ticket("T2", "13900000002"), ticket("T3", "13900000003")])
        .await;
    let before = chrono::Utc::now().timestamp_millis();
    let v = s.post("/api/aicall/stopTasks", &json!({"batchIds": [ids[0], 999999]})).await;
    assert_eq!(v["code"], 0);
    assert_eq!(v["msg"], "已停止 1 个任务");
    let v = s.post("/api/aicall/stopTasks", &json!({"ticketNos": ["T2", "NOPE"]})).await;
    assert_eq!(v["msg"], "已停止 1 个任务");
    let v = s.post("/api/aicall/stopTasks", &json!({"batchIds": [ids[0]], "ticketNos": ["T2"]})).await;
    assert_eq!(v["msg"], "已停止 0 个任务", "stopping again changes nothing");
    for id in &ids[..2] {
        let t = s.task(*id).await;
        assert_eq!(t["status"], "已停止");
        assert!(t["stopTime"].as_i64().unwrap() >= before - 1000);
    }
    assert_eq!(s.task(ids[2]).await["status"], "待呼叫");
    assert_eq!(s.task(ids[2]).await["stopTime"], Value::Null);
}

#[tokio::test]
async fn stop_tasks_needs_at_least_one_list() {
    let s = TestServer::start().await;
    for body in [json!({}), json!({"batchIds": []}), json!({"batchIds": null, "ticketNos": []})] {
        assert_bad(&s.post("/api/aicall/stopTasks", &body).await, "至少提供一个");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_in_the_envelope_and_the_server_keeps_serving() {
    let s = TestServer::start().await;
    let huge = vec![b' '; 20 * 1024 * 1024];
    let (status, v) = s.post_raw("/api/aicall/createTasks", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["code"], 413);
    assert!(v["msg"].as_str().unwrap().contains("请求体过大"));
    assert_eq!(s.tasks(json!({})).await["total"], 0);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_the_envelope_too() {
    let s = TestServer::start().await;
    let res = s.get("/api/aicall/nothing").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], 404);
    let res = s.get("/api/aicall/records/list").await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], 405);
}

#[tokio::test]
async fn calltype_of_an_unknown_call_is_a_clear_405() {
    let s = TestServer::start().await;
    let v: Value = s.get("/api/aicall/calltype/uuid?uuid=2508162111590110001").await.json().await.unwrap();
    assert_bad(&v, "2508162111590110001");
    let v: Value = s.get("/api/aicall/calltype/uuid").await.json().await.unwrap();
    assert_bad(&v, "uuid 不能为空");
}

#[tokio::test]
async fn a_body_without_content_type_is_still_read_as_json() {
    let s = TestServer::start().await;
    let res = s
        .client
        .post(s.url("/api/aicall/records/list"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"callType":"02"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["code"], 0);
}
