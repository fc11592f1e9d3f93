//! The LLM agent against a fake chat-completions server (axum on port 0) that speaks the
//! OpenAI protocol, streamed (SSE) and not, and fails in the ways real ones do. The sim
//! callee converses with it through the real server; records/list shows the result.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{TestServer, ticket};
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use callcenter::agent::AgentKind;
use callcenter::agent::llm::{LlmAgent, LlmSettings};
use callcenter::agent::script::ScriptSettings;
use callcenter::agent::{Agent, Reply, TaskContext, classify};
use callcenter::domain::{Phone, Turn};
use callcenter::telephony::sim::SimCarrier;
use callcenter::telephony::sim::SimSettings;
use callcenter::telephony::{
    CallEnd, CallSession, Carrier, DialRequest, DialResult, HangupReason, Heard, HungUp, Said,
};
use futures::StreamExt;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// The fake model server.

/// How the fake server answers one request.
enum Answer {
    Json(Value),
    /// Raw body parts, each sent after its pause.
    Stream(&'static str, Vec<(Duration, String)>),
    Status(u16),
    Hang,
}

type Policy = Arc<dyn Fn(usize, &Value) -> Answer + Send + Sync>;

struct Seen {
    body: Value,
    authorization: Option<String>,
}

struct Inner {
    policy: Policy,
    seen: Mutex<Vec<Seen>>,
}

struct FakeModel {
    base_url: String,
    inner: Arc<Inner>,
}

impl FakeModel {
    async fn start(policy: impl Fn(usize, &Value) -> Answer + Send + Sync + 'static) -> FakeModel {
        let inner = Arc::new(Inner { policy: Arc::new(policy), seen: Mutex::new(Vec::new()) });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeModel { base_url, inner }
    }

    fn requests(&self) -> Vec<Value> {
        self.inner.seen.lock().unwrap().iter().map(|s| s.body.clone()).collect()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).expect("the agent sends JSON");
    let n = {
        let mut seen = inner.seen.lock().unwrap();
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_string());
        seen.push(Seen { body: body.clone(), authorization });
        seen.len() - 1
    };
    match (inner.policy)(n, &body) {
        Answer::Json(v) => axum::Json(v).into_response(),
        Answer::Stream(content_type, parts) => {
            let parts = futures::stream::iter(parts).then(|(pause, part)| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, std::convert::Infallible>(part)
            });
            ([(header::CONTENT_TYPE, content_type)], Body::from_stream(parts)).into_response()
        }
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            axum::Json(json!({"error": {"message": "the model fell over", "type": "server_error"}})),
        )
            .into_response(),
        Answer::Hang => std::future::pending().await,
    }
}

const USAGE: (u64, u64) = (100, 20);

/// A reply as a chat-completions answer: whole, or as server-sent events with the text in
/// small pieces and the tool call in fragments.
fn answer(stream: bool, text: &str, tool: Option<(&str, Value)>) -> Answer {
    let usage =
        json!({"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1});
    let finish = if tool.is_some() { "tool_calls" } else { "stop" };
    if !stream {
        let mut message =
            json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if let Some((name, args)) = &tool {
            message["tool_calls"] = json!([{"id": "call_1", "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]);
        }
        return Answer::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }));
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(3) {
        events.push(chunk(json!({"content": piece.iter().collect::<String>()}), Value::Null));
    }
    if let Some((name, args)) = tool {
        let args = args.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                    "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for part in [a, b] {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    events
        .push(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}));
    let mut parts: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    parts.push("data: [DONE]\n\n".into());
    sse(parts.into_iter().map(|p| (Duration::ZERO, p)).collect())
}

fn sse(parts: Vec<(Duration, String)>) -> Answer {
    Answer::Stream("text/event-stream", parts)
}

const GREETING: &str =
    "您好，请问是张三先生吗？我是客服中心的智能助理，想提醒您参加本周末的优惠活动，请问您清楚了吗？";
const ANSWER: &str = "活动在本周六上午十点开始。请问您还有其他问题吗？";
const THANKS: &str = "好的，感谢您的确认，祝您生活愉快，再见。";
const SORRY: &str = "好的，打扰您了，再见。";

/// What the callee said so far (the model's hidden cues, which start with `（`, left out).
fn callee_lines(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .filter(|c| !c.starts_with('（'))
        .collect()
}

/// A well-behaved model: greets and reads the notice, answers a question, and ends the
/// call with `end_call` once the callee confirms or refuses.
fn polite_model(stream: bool) -> impl Fn(usize, &Value) -> Answer + Send + Sync + 'static {
    move |_, body| {
        let heard = callee_lines(body);
        let Some(last) = heard.last() else { return answer(stream, GREETING, None) };
        match classify(last) {
            Reply::Question => answer(stream, ANSWER, None),
            Reply::Refused => answer(stream, SORRY, Some(("end_call", json!({"intent": "拒绝"})))),
            _ => answer(stream, THANKS, Some(("end_call", json!({"intent": "已确认"})))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sim callee: which seed gives which behaviour on a server's first call.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callee {
    Confirms,
    Asks,
    Refuses,
    Silent,
    HangsUp,
    WantsHuman,
}

/// The first seed whose first answered call has the wanted callee (found by placing that
/// call on a sim carrier of our own, as the server's dialer will).
async fn seed_for(wanted: Callee) -> u64 {
    for seed in 0..1000 {
        let sim =
            SimCarrier::new(&SimSettings { answer_rate: 1.0, time_scale: 0.0, seed, ..Default::default() });
        let request = DialRequest {
            call_id: "2508162111590110001".into(),
            phone: Phone::parse("13912345678").unwrap(),
            ring_timeout: Duration::from_secs(45),
            recording: None,
            caller_id: None,
        };
        let DialResult::Answered(mut call) = sim.dial(request).await else { panic!("answer_rate 1") };
        let _ = call.say("您好").await;
        let callee = match call.listen(Duration::from_secs(8)).await {
            Err(_) => Callee::HangsUp,
            Ok(Heard::Silence) => Callee::Silent,
            Ok(Heard::Speech(text)) => match classify(&text) {
                Reply::Question => Callee::Asks,
                Reply::Refused => Callee::Refuses,
                Reply::Human => Callee::WantsHuman,
                _ => Callee::Confirms,
            },
        };
        if callee == wanted {
            return seed;
        }
    }
    panic!("no seed gives a {wanted:?} callee")
}

// ---------------------------------------------------------------------------------------
// The server with the LLM agent, and one call through it.

async fn server(model: &FakeModel, callee: Callee, tweak: impl FnOnce(&mut LlmSettings)) -> TestServer {
    let seed = seed_for(callee).await;
    let base_url = model.base_url.clone();
    TestServer::start_with(move |c| {
        c.agent.kind = AgentKind::Llm;
        c.agent.llm.base_url = base_url;
        c.agent.llm.timeout_secs = 1;
        c.sim.answer_rate = 1.0;
        c.sim.seed = seed;
        tweak(&mut c.agent.llm);
    })
    .await
}

/// Places one call for the test ticket and returns its record.
async fn one_call(s: &TestServer) -> Value {
    s.create(&[ticket("LLM-1", "13912345678")]).await;
    s.wait_all_ended(Duration::from_secs(20)).await;
    let rows = s.records(json!({})).await["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows[0].clone()
}

fn dialogue(record: &Value) -> Vec<(String, String)> {
    record["dialogue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap().to_string(), t["content"].as_str().unwrap().to_string()))
        .collect()
}

fn assistant(text: &str) -> (String, String) {
    ("assistant".into(), text.into())
}

fn roles(record: &Value) -> Vec<String> {
    dialogue(record).into_iter().map(|(role, _)| role).collect()
}

/// The user turns are the sim callee's replies, in character.
fn user_lines(record: &Value) -> Vec<String> {
    dialogue(record).into_iter().filter(|(role, _)| role == "user").map(|(_, c)| c).collect()
}

const TICKET_CONTENT: &str = "尊敬的张三先生，提醒您参加我们本周末的线下优惠活动。";

/// The full scripted call (default script lines) for a callee who confirms.
fn scripted_call(confirmation: &str) -> Vec<(String, String)> {
    let s = ScriptSettings::default();
    vec![
        assistant("您好，请问是张三吗？这里是客服中心的智能助理。"),
        assistant(&format!("关于您的活动通知：{TICKET_CONTENT}")),
        assistant(&s.confirm),
        ("user".into(), confirmation.into()),
        assistant(&s.on_confirmed),
        assistant(&s.closing),
    ]
}

// ---------------------------------------------------------------------------------------
// Conversations.

#[tokio::test]
async fn a_streamed_model_holds_the_conversation_and_ends_it_with_its_intent() {
    let model = FakeModel::start(polite_model(true)).await;
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let record = one_call(&s).await;

    let heard = user_lines(&record);
    assert_eq!(heard.len(), 1);
    assert_eq!(classify(&heard[0]), Reply::Confirmed, "{heard:?}");
    assert_eq!(
        dialogue(&record),
        [assistant(GREETING), ("user".into(), heard[0].clone()), assistant(THANKS)],
        "one assistant turn per reply, spoken sentence by sentence"
    );
    assert_eq!(record["intent"], "已确认");
    assert_eq!(record["hangupCause"], "NORMAL_CLEARING:sip:200");

    // Nothing of the prompt and no ticket field that was not said is in the dialogue.
    for (_, content) in dialogue(&record) {
        for hidden in ["你是客服中心", "通知内容", TICKET_CONTENT, "LLM-1", "end_call", "（"] {
            assert!(!content.contains(hidden), "{hidden:?} leaked into {content:?}");
        }
    }

    // The model saw the ticket in the system prompt, and the conversation so far.
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let first = &requests[0];
    assert_eq!(first["stream"], true);
    assert_eq!(first["stream_options"]["include_usage"], true);
    assert_eq!(first["tools"][0]["function"]["name"], "end_call");
    assert_eq!(first["tools"][1]["function"]["name"], "transfer_to_human");
    assert!(first.get("model").is_none(), "an empty model name is left out");
    let system = &first["messages"][0];
    assert_eq!(system["role"], "system");
    let prompt = system["content"].as_str().unwrap();
    for field in ["张三", "活动通知", TICKET_CONTENT] {
        assert!(prompt.contains(field), "the system prompt has {field}: {prompt}");
    }
    let second: Vec<(&str, &str)> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(2) // the system prompt and the opening cue
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(second, [("assistant", GREETING), ("user", heard[0].as_str())]);
    assert!(model.inner.seen.lock().unwrap().iter().all(|s| s.authorization.is_none()), "no key, no header");

    // Token use and request outcomes are in the metrics (process-wide, so at least ours).
    let metrics = s.get("/metrics").await.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        let line =
            metrics.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("callcenter_llm_tokens_total{kind=\"prompt\"}") >= 2.0 * USAGE.0 as f64);
    assert!(value("callcenter_llm_tokens_total{kind=\"completion\"}") >= 2.0 * USAGE.1 as f64);
    assert!(value("callcenter_llm_requests_total{outcome=\"ok\"}") >= 2.0);
    assert!(value("callcenter_llm_first_token_seconds_count") >= 2.0);
}

#[tokio::test]
async fn a_model_without_streaming_answers_a_question_and_then_closes() {
    let model = FakeModel::start(polite_model(false)).await;
    let s = server(&model, Callee::Asks, |l| {
        l.stream = false;
        l.api_key = "sk-test".into();
        l.model = "qwen2.5-7b-instruct".into();
    })
    .await;
    let record = one_call(&s).await;

    let heard = user_lines(&record);
    assert_eq!(heard.len(), 2, "{:#?}", dialogue(&record));
    assert_eq!(classify(&heard[0]), Reply::Question);
    assert_eq!(
        dialogue(&record),
        [
            assistant(GREETING),
            ("user".into(), heard[0].clone()),
            assistant(ANSWER),
            ("user".into(), heard[1].clone()),
            assistant(THANKS)
        ]
    );
    assert_eq!(record["intent"], "已确认");
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0]["stream"], false);
    assert!(requests[0].get("stream_options").is_none());
    assert_eq!(requests[0]["model"], "qwen2.5-7b-instruct");
    let seen = model.inner.seen.lock().unwrap();
    assert!(seen.iter().all(|s| s.authorization.as_deref() == Some("Bearer sk-test")));
}

#[tokio::test]
async fn a_server_that_does_not_stream_is_understood_when_a_stream_was_asked_for() {
    let model = FakeModel::start(polite_model(false)).await;
    let s = server(&model, Callee::Confirms, |l| l.stream = true).await;
    let record = one_call(&s).await;
    assert_eq!(roles(&record), ["assistant", "user", "assistant"]);
    assert_eq!(dialogue(&record)[2], assistant(THANKS));
    assert_eq!(record["intent"], "已确认");
    assert_eq!(model.requests()[0]["stream"], true);
}

#[tokio::test]
async fn a_model_without_tools_ends_the_call_with_a_control_token_that_is_never_spoken() {
    let model = FakeModel::start(|_, body: &Value| {
        match callee_lines(body).is_empty() {
            true => answer(true, GREETING, None),
            // The token comes in pieces, as a tokenizer would cut it.
            false => answer(true, &format!("{SORRY}[END:拒绝]"), None),
        }
    })
    .await;
    let s = server(&model, Callee::Refuses, |l| l.tools = false).await;
    let record = one_call(&s).await;

    let heard = user_lines(&record);
    assert_eq!(dialogue(&record), [assistant(GREETING), ("user".into(), heard[0].clone()), assistant(SORRY)]);
    assert_eq!(record["intent"], "拒绝");
    assert!(model.requests().iter().all(|r| r.get("tools").is_none()));
}

#[tokio::test]
async fn a_callee_who_asks_for_a_person_is_handed_over_by_transfer_to_human() {
    const HANDOVER: &str = "好的，马上为您转接人工客服。";
    let model = FakeModel::start(|_, body: &Value| match callee_lines(body).is_empty() {
        true => answer(false, GREETING, None),
        false => answer(false, HANDOVER, Some(("transfer_to_human", json!({"reason": "想问细节"})))),
    })
    .await;
    // Nobody to transfer to: the callee is told someone will call back.
    let s = server(&model, Callee::Confirms, |l| l.stream = false).await;
    let record = one_call(&s).await;
    assert_eq!(roles(&record), ["assistant", "user", "assistant", "assistant", "assistant"]);
    assert_eq!(dialogue(&record)[2], assistant(HANDOVER));
    assert_eq!(dialogue(&record)[3], assistant("抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。"));
    assert_eq!(record["intent"], "转人工");
    assert_eq!(record["extnum"], Value::Null);

    // With a destination, the model's words announce it and the call is handed over.
    let seed = seed_for(Callee::Confirms).await;
    let base_url = model.base_url.clone();
    let s = TestServer::start_with(move |c| {
        c.agent.kind = AgentKind::Llm;
        c.agent.llm.base_url = base_url;
        c.agent.llm.stream = false;
        c.sim.answer_rate = 1.0;
        c.sim.seed = seed;
        c.transfer.default_to = "8001".into();
    })
    .await;
    let record = one_call(&s).await;
    assert_eq!(dialogue(&record)[2], assistant(HANDOVER));
    assert_eq!(
        dialogue(&record).last().unwrap(),
        &assistant("[转人工 8001]"),
        "no script line after the model's own"
    );
    assert_eq!(record["intent"], "转人工");
    assert_eq!(record["extnum"], "8001");
}

#[tokio::test]
async fn an_end_call_without_words_gets_the_closing_line() {
    let model = FakeModel::start(|_, body: &Value| match callee_lines(body).is_empty() {
        true => answer(true, GREETING, None),
        false => answer(true, "", Some(("end_call", json!({"intent": "confirmed"})))),
    })
    .await;
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let record = one_call(&s).await;
    assert_eq!(dialogue(&record)[2], assistant(&ScriptSettings::default().closing));
    assert_eq!(record["intent"], "已确认", "the model's outcome, normalised");
}

#[tokio::test]
async fn a_silent_callee_is_asked_once_more_then_bid_goodbye_without_a_user_turn() {
    const HELLO: &str = "喂，您好，请问能听到吗？";
    let model =
        FakeModel::start(|n, _: &Value| answer(true, if n == 0 { GREETING } else { HELLO }, None)).await;
    let s = server(&model, Callee::Silent, |_| {}).await;
    let record = one_call(&s).await;
    assert_eq!(
        dialogue(&record),
        [assistant(GREETING), assistant(HELLO), assistant(&ScriptSettings::default().closing)]
    );
    assert_eq!(record["intent"], "无效");
    // The model was told about the silence; the dialogue was not.
    let last = model.requests()[1]["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "user");
    assert!(last["content"].as_str().unwrap().starts_with('（'), "{last}");
}

#[tokio::test]
async fn a_callee_who_hangs_up_keeps_what_was_said_and_the_outcome_is_by_rules() {
    let model = FakeModel::start(polite_model(true)).await;
    let s = server(&model, Callee::HangsUp, |_| {}).await;
    let record = one_call(&s).await;
    assert_eq!(dialogue(&record), [assistant(GREETING)]);
    assert_eq!(record["intent"], "无效");
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn max_turns_ends_a_model_that_never_says_goodbye_with_the_closing_line() {
    const MORE: &str = "请问还有什么可以帮您？";
    let model = FakeModel::start(|_, _: &Value| answer(true, MORE, None)).await;
    let s = server(&model, Callee::Confirms, |l| l.max_turns = 3).await;
    let record = one_call(&s).await;
    assert_eq!(roles(&record), ["assistant", "user", "assistant", "user", "assistant", "assistant"]);
    assert_eq!(dialogue(&record)[5], assistant(&ScriptSettings::default().closing));
    assert_eq!(model.requests().len(), 3);
    assert_eq!(record["intent"], "已确认", "by rules on what the callee said");
}

// ---------------------------------------------------------------------------------------
// Guard rails: a failing model still gives a full call.

#[tokio::test]
async fn a_model_that_answers_http_500_gives_a_full_scripted_call() {
    let model = FakeModel::start(|_, _: &Value| Answer::Status(500)).await;
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let record = one_call(&s).await;
    let heard = user_lines(&record);
    assert_eq!(dialogue(&record), scripted_call(&heard[0]));
    assert_eq!(record["intent"], "已确认");
    assert_eq!(model.requests().len(), 1, "an error is not retried: the script takes over");
}

#[tokio::test]
async fn a_model_that_hangs_gets_the_filler_and_one_retry_then_the_script() {
    let model = FakeModel::start(|_, _: &Value| Answer::Hang).await;
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let started = std::time::Instant::now();
    let record = one_call(&s).await;
    let took = started.elapsed();
    let heard = user_lines(&record);
    let mut expected = vec![assistant("请稍等，我确认一下。")];
    expected.extend(scripted_call(&heard[0]));
    assert_eq!(dialogue(&record), expected);
    assert_eq!(model.requests().len(), 2);
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "two 1 s timeouts: {took:?}");
}

#[tokio::test]
async fn a_turn_that_times_out_once_is_retried_after_the_filler() {
    let polite = polite_model(true);
    let model =
        FakeModel::start(move |n, body: &Value| if n == 0 { Answer::Hang } else { polite(n, body) }).await;
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let record = one_call(&s).await;
    let heard = user_lines(&record);
    assert_eq!(
        dialogue(&record),
        [
            assistant("请稍等，我确认一下。"),
            assistant(GREETING),
            ("user".into(), heard[0].clone()),
            assistant(THANKS)
        ]
    );
    assert_eq!(record["intent"], "已确认");
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0], requests[1], "the retry asks the same; the filler is not the model's");
}

#[tokio::test]
async fn malformed_model_output_falls_back_to_the_script() {
    type Make = fn() -> Answer;
    let answers: [(&str, Make); 4] = [
        ("a stream event that is not JSON", || {
            sse(vec![(Duration::ZERO, "data: {\"choices\": [\n\n".into())])
        }),
        ("an error inside the stream", || {
            sse(vec![(Duration::ZERO, "data: {\"error\": {\"message\": \"context too long\"}}\n\n".into())])
        }),
        ("a body that is not JSON", || {
            Answer::Stream("application/json", vec![(Duration::ZERO, "<html>".into())])
        }),
        ("JSON without choices", || Answer::Json(json!({"object": "chat.completion", "choices": []}))),
    ];
    for (what, make) in answers {
        let model = FakeModel::start(move |_, _: &Value| make()).await;
        let stream = what.contains("stream");
        let s = server(&model, Callee::Confirms, |l| l.stream = stream).await;
        let record = one_call(&s).await;
        let heard = user_lines(&record);
        assert_eq!(dialogue(&record), scripted_call(&heard[0]), "{what}");
        assert_eq!(record["intent"], "已确认", "{what}");
    }
}

#[tokio::test]
async fn an_unreachable_model_falls_back_to_the_script() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let model = FakeModel {
        base_url: format!("http://{closed}/v1"),
        ..FakeModel::start(|_, _: &Value| Answer::Status(500)).await
    };
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let record = one_call(&s).await;
    assert_eq!(dialogue(&record), scripted_call(&user_lines(&record)[0]));
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn a_model_that_fails_mid_call_hands_over_to_the_script_without_a_second_greeting() {
    let model = FakeModel::start(
        |n, _: &Value| if n == 0 { answer(true, GREETING, None) } else { Answer::Status(503) },
    )
    .await;
    let s = server(&model, Callee::Confirms, |_| {}).await;
    let record = one_call(&s).await;
    let heard = user_lines(&record);
    assert_eq!(heard.len(), 2);
    let mut expected = vec![assistant(GREETING), ("user".into(), heard[0].clone())];
    // The script from its body on: the callee has been greeted.
    expected.extend(scripted_call(&heard[1]).into_iter().skip(1));
    assert_eq!(dialogue(&record), expected);
    assert_eq!(record["intent"], "已确认");
}

// ---------------------------------------------------------------------------------------
// Streaming: the first sentence is spoken while the rest is generated.

/// A callee that notes when each line was said, and answers nothing.
struct Ear {
    started: tokio::time::Instant,
    said: Arc<Mutex<Vec<(Duration, String)>>>,
}

#[async_trait]
impl CallSession for Ear {
    async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
        self.said.lock().unwrap().push((self.started.elapsed(), text.to_string()));
        Ok(Said::Whole)
    }
    async fn listen(&mut self, _: Duration) -> Result<Heard, HungUp> {
        Ok(Heard::Silence)
    }
    async fn hang_up(self: Box<Self>, _: HangupReason) -> CallEnd {
        unreachable!("the agent never hangs up")
    }
}

fn task() -> TaskContext {
    TaskContext {
        batch_id: 10001,
        ticket_no: "T1".into(),
        username: "张三".into(),
        ticket_type: "活动通知".into(),
        ticket_content: TICKET_CONTENT.into(),
        overrides: Default::default(),
        transfer_to: None,
        transfer_ring_timeout: Duration::from_secs(30),
    }
}

/// A callee who speaks over the agent's first line half way through, then says `then`.
struct SpeaksOver {
    said: Vec<String>,
    then: Option<&'static str>,
}

#[async_trait]
impl CallSession for SpeaksOver {
    async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
        self.said.push(text.to_string());
        Ok(if self.said.len() == 1 { Said::Interrupted { played: 0.5 } } else { Said::Whole })
    }
    async fn listen(&mut self, _: Duration) -> Result<Heard, HungUp> {
        Ok(self.then.take().map_or(Heard::Silence, |t| Heard::Speech(t.into())))
    }
    async fn hang_up(self: Box<Self>, _: HangupReason) -> CallEnd {
        unreachable!("the agent never hangs up")
    }
}

#[tokio::test]
async fn a_callee_who_speaks_over_a_reply_stops_it_and_the_model_hears_what_they_heard() {
    let model = FakeModel::start(|n, _: &Value| match n {
        0 => answer(true, "您好，我是客服中心的智能助理。今天来电是想通知您一件事。", None),
        _ => answer(true, "好的，请讲。", Some(("end_call", json!({"intent": "需回访"})))),
    })
    .await;
    let settings = LlmSettings { base_url: model.base_url.clone(), ..LlmSettings::default() };
    let agent = LlmAgent::new(&settings, &ScriptSettings::default());
    let mut call = SpeaksOver { said: Vec::new(), then: Some("等一下，我有个问题") };
    let mut dialogue = Vec::new();
    agent.converse(&task(), &mut call, &mut dialogue).await.unwrap();

    // The rest of the reply went unsaid; the dialogue keeps the half that was heard.
    assert_eq!(call.said[0], "您好，我是客服中心的智能助理。");
    assert!(!call.said.iter().any(|l| l.contains("通知")), "{:?}", call.said);
    assert_eq!(dialogue[0], Turn::assistant("您好，我是客服中…"));
    assert_eq!(dialogue[1], Turn::user("等一下，我有个问题"));
    // The model's next request carries what the callee heard, not what it wrote.
    let next = &model.requests()[1]["messages"];
    let assistant: Vec<&str> = next
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(assistant, ["您好，我是客服中…"], "{next:#}");
}

#[tokio::test]
async fn the_first_sentence_is_spoken_while_the_rest_is_still_generated() {
    let chunk = |text: &str| {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        )
    };
    let end = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "type": "function",
            "function": {"name": "end_call", "arguments": "{\"intent\":\"已确认\"}"}}]}, "finish_reason": "tool_calls"}]})
    );
    let parts = vec![
        (Duration::ZERO, chunk("您好，我是客服中心的")),
        (Duration::from_millis(50), chunk("智能助理。")),
        (Duration::from_millis(50), chunk("这是")),
        (Duration::from_millis(600), chunk("第二句。")),
        (Duration::ZERO, end),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let model = FakeModel::start(move |_, _: &Value| sse(parts.clone())).await;
    let settings =
        LlmSettings { base_url: model.base_url.clone(), timeout_secs: 2, ..LlmSettings::default() };
    let agent = LlmAgent::new(&settings, &ScriptSettings::default());
    let said = Arc::new(Mutex::new(Vec::new()));
    let mut call = Ear { started: tokio::time::Instant::now(), said: said.clone() };
    let mut dialogue = Vec::new();
    agent.converse(&task(), &mut call, &mut dialogue).await.unwrap();

    let said = said.lock().unwrap().clone();
    let lines: Vec<&str> = said.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(lines, ["您好，我是客服中心的智能助理。", "这是第二句。"]);
    assert!(said[0].0 < Duration::from_millis(500), "the first sentence waited for the rest: {said:?}");
    assert!(said[1].0 >= Duration::from_millis(600), "{said:?}");
    assert_eq!(dialogue, [Turn::assistant("您好，我是客服中心的智能助理。这是第二句。")]);
    assert_eq!(agent.intent(&task(), &dialogue).await, "已确认");
    // Taken once: a later attempt of the same task starts afresh.
    assert_eq!(agent.intent(&task(), &dialogue).await, "无效");
}
