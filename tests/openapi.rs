//! The OpenAPI document: valid, and naming every route under each of its names.

mod common;

use common::TestServer;
use serde_json::Value;

#[tokio::test]
async fn the_openapi_document_parses_and_names_every_route_and_alias() {
    let s = TestServer::start().await;
    let res = s.get("/api/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/aicall/records/list", "post"),
        ("/aicall/api/records/list", "post"),
        ("/api/aicall/calltask/list", "post"),
        ("/aicall/api/calltask/list", "post"),
        ("/api/aicall/createTasks", "post"),
        ("/aicall/api/createTasks", "post"),
        ("/api/aicall/stopTasks", "post"),
        ("/aicall/api/stopTasks", "post"),
        ("/aicall/stopTasks", "post"),
        ("/api/aicall/calltype/uuid", "get"),
        ("/aicall/api/calltype/uuid", "get"),
    ];
    for (path, method) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
    }
    // Every described operation really answers, with the envelope.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let res = match method.as_str() {
                "post" => s.client.post(s.url(path)).body("{}").send().await.unwrap(),
                _ => s.client.get(s.url(path)).send().await.unwrap(),
            };
            let v: Value = res.json().await.unwrap();
            assert!(v["code"].is_i64(), "{method} {path}: {v}");
        }
    }
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
