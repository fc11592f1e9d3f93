//! The chat-completions client: one request per model turn, streamed (SSE) or not, read
//! on its own task so the first sentence can be spoken while the rest is generated.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::LlmSettings;
use super::prompt::{Control, Speech};

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message { role: "system", content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: "user", content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message { role: "assistant", content: content.into() }
    }
}

/// A function the model called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

/// How a reply ended, once it has been spoken.
#[derive(Debug, Default)]
pub struct Finish {
    pub tools: Vec<ToolCall>,
    pub controls: Vec<Control>,
    pub usage: Option<Usage>,
}

/// What the reader passes to the speaker.
#[derive(Debug)]
pub enum Event {
    Sentence(String),
    End(Finish),
    Failed(ModelError),
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot reach the model: {0}")]
    Connect(String),
    #[error("the model answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the model's answer is not valid: {0}")]
    BadAnswer(String),
    #[error("the model reported an error: {0}")]
    Api(String),
    #[error("the model's reply is empty")]
    Empty,
    #[error("the model did not answer in time")]
    Timeout,
}

impl ModelError {
    /// The `outcome` label of `callcenter_llm_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ModelError::Timeout => "timeout",
            _ => "error",
        }
    }
}

/// The tools offered to the model.
pub fn tools() -> Value {
    json!([
        {
            "type": "function",
            "function": {
                "name": "end_call",
                "description": "道别之后结束通话，并给出通话结果。",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "intent": {
                            "type": "string",
                            "enum": ["已确认", "拒绝", "需回访", "无效"],
                            "description": "已确认：对方清楚并确认；拒绝：对方拒绝；需回访：对方有问题需要专人回电；无效：对方不是本人或没有有效回应。"
                        }
                    },
                    "required": ["intent"]
                }
            }
        },
        {
            "type": "function",
            "function": {
                "name": "transfer_to_human",
                "description": "对方要求人工客服时调用：告知对方正在转接之后调用，通话转给人工客服（无人接听时系统会告知对方稍后回电）。",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "reason": { "type": "string", "description": "对方要人工服务的原因" }
                    }
                }
            }
        }
    ])
}

pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    settings: LlmSettings,
}

impl ChatClient {
    pub fn new(settings: &LlmSettings) -> ChatClient {
        let timeout = settings.turn_timeout();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let url = format!("{}/chat/completions", settings.base_url.trim_end_matches('/'));
        ChatClient { http, url, settings: settings.clone() }
    }

    /// The request body for `messages`.
    pub fn body(&self, messages: &[Message]) -> Value {
        let s = &self.settings;
        let mut body = json!({
            "messages": messages,
            "temperature": s.temperature,
            "stream": s.stream,
        });
        if !s.model.is_empty() {
            body["model"] = json!(s.model);
        }
        if s.stream {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if s.tools {
            body["tools"] = tools();
        }
        body
    }

    /// Sends one turn's request and reads the answer on its own task.
    pub fn start(&self, messages: &[Message]) -> Reader {
        let mut request = self.http.post(&self.url).json(&self.body(messages));
        if !self.settings.api_key.is_empty() {
            request = request.bearer_auth(&self.settings.api_key);
        }
        let stream = self.settings.stream;
        let stall = self.settings.turn_timeout();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let sink = Sink { tx: tx.clone(), started, first: false };
            let result = match send(request).await {
                // A server that does not stream answers whole, whatever was asked.
                Ok(response) if stream && !is_json(&response) => read_stream(response, stall, sink).await,
                Ok(response) => read_whole(response, sink).await,
                Err(e) => Err(e),
            };
            let _ = tx.send(match result {
                Ok(finish) => Event::End(finish),
                Err(e) => Event::Failed(e),
            });
        });
        Reader { rx, task }
    }
}

/// The answer being read; dropping it abandons the request.
pub struct Reader {
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    pub async fn next(&mut self) -> Event {
        self.rx.recv().await.unwrap_or_else(|| Event::Failed(ModelError::Api("the reader stopped".into())))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes sentences to the speaker and notes the first token's arrival.
struct Sink {
    tx: mpsc::UnboundedSender<Event>,
    started: Instant,
    first: bool,
}

impl Sink {
    fn first_token(&mut self) {
        if !self.first {
            self.first = true;
            metrics::histogram!("callcenter_llm_first_token_seconds")
                .record(self.started.elapsed().as_secs_f64());
        }
    }

    fn say(&self, sentences: Vec<String>) {
        for s in sentences {
            let _ = self.tx.send(Event::Sentence(s));
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, ModelError> {
    let response = request.send().await.map_err(|e| ModelError::Connect(error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // Some detail for the log, but never wait long for it.
    let body = tokio::time::timeout(Duration::from_secs(2), response.text()).await;
    let body: String = body.ok().and_then(Result::ok).unwrap_or_default().chars().take(300).collect();
    Err(ModelError::Http { status: status.as_u16(), body })
}

fn is_json(response: &reqwest::Response) -> bool {
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE);
    content_type.and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A non-streamed answer: `choices[0].message` with `content` and `tool_calls`.
async fn read_whole(response: reqwest::Response, mut sink: Sink) -> Result<Finish, ModelError> {
    let bytes = response.bytes().await.map_err(|e| ModelError::Connect(error_chain(&e)))?;
    sink.first_token();
    let answer: Value =
        serde_json::from_slice(&bytes).map_err(|e| ModelError::BadAnswer(format!("not JSON ({e})")))?;
    let (text, tools, usage) = parse_whole(&answer)?;
    let mut speech = Speech::default();
    let mut sentences = speech.push(&text);
    sentences.extend(speech.finish());
    let spoke = !sentences.is_empty();
    sink.say(sentences);
    finish(spoke, tools, speech.controls, usage)
}

/// The parts of a non-streamed answer.
pub fn parse_whole(answer: &Value) -> Result<(String, Vec<ToolCall>, Option<Usage>), ModelError> {
    if let Some(error) = api_error(answer) {
        return Err(error);
    }
    let message = answer
        .pointer("/choices/0/message")
        .filter(|m| m.is_object())
        .ok_or_else(|| ModelError::BadAnswer("no choices[0].message".into()))?;
    let text = match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // Content parts: [{type: text, text}]
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        other => return Err(ModelError::BadAnswer(format!("content is {other}"))),
    };
    let tools = match &message["tool_calls"] {
        Value::Array(calls) => calls
            .iter()
            .map(|c| ToolCall {
                name: c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_string(),
                arguments: match c.pointer("/function/arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Object(_)) => v.to_string(),
                    _ => String::new(),
                },
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok((text, tools, usage_of(answer)))
}

fn api_error(v: &Value) -> Option<ModelError> {
    let error = v.get("error").filter(|e| !e.is_null())?;
    let message = error.get("message").and_then(Value::as_str).map(str::to_string);
    Some(ModelError::Api(message.unwrap_or_else(|| error.to_string())))
}

fn usage_of(v: &Value) -> Option<Usage> {
    let usage = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        prompt: usage["prompt_tokens"].as_u64().unwrap_or(0),
        completion: usage["completion_tokens"].as_u64().unwrap_or(0),
    })
}

fn finish(
    spoke: bool,
    tools: Vec<ToolCall>,
    controls: Vec<Control>,
    usage: Option<Usage>,
) -> Result<Finish, ModelError> {
    if !spoke && tools.is_empty() && controls.is_empty() {
        return Err(ModelError::Empty);
    }
    Ok(Finish { tools, controls, usage })
}

/// A streamed answer: server-sent events of chat-completion chunks, then `[DONE]`.
async fn read_stream(
    response: reqwest::Response,
    stall: Duration,
    mut sink: Sink,
) -> Result<Finish, ModelError> {
    let mut body = response.bytes_stream();
    let mut sse = SseParser::default();
    let mut chunks = ChunkAccumulator::default();
    let mut speech = Speech::default();
    let mut spoke = false;
    'read: loop {
        let next = tokio::time::timeout(stall, body.next()).await.map_err(|_| ModelError::Timeout)?;
        let ended = next.is_none();
        let data = match next {
            None => sse.finish(),
            Some(Ok(bytes)) => sse.push(&bytes),
            Some(Err(e)) => return Err(ModelError::Connect(error_chain(&e))),
        };
        for data in data {
            if data.trim() == "[DONE]" {
                break 'read;
            }
            let chunk: Value = serde_json::from_str(&data).map_err(|e| {
                ModelError::BadAnswer(format!("a stream event is not JSON ({e}): {data:.80}"))
            })?;
            if let Some(text) = chunks.add(&chunk)? {
                sink.first_token();
                let sentences = speech.push(&text);
                spoke |= !sentences.is_empty();
                sink.say(sentences);
            } else if !chunks.tools.is_empty() {
                sink.first_token();
            }
        }
        if ended {
            break;
        }
    }
    let sentences = speech.finish();
    spoke |= !sentences.is_empty();
    sink.say(sentences);
    finish(spoke, chunks.tool_calls(), speech.controls, chunks.usage)
}

/// Collects what the chunks of a stream carry besides text: tool calls (their names and
/// argument fragments, by index) and the usage.
#[derive(Debug, Default)]
pub struct ChunkAccumulator {
    tools: BTreeMap<u64, ToolCall>,
    pub usage: Option<Usage>,
}

impl ChunkAccumulator {
    /// Takes one chunk; returns its text, if any.
    pub fn add(&mut self, chunk: &Value) -> Result<Option<String>, ModelError> {
        if let Some(error) = api_error(chunk) {
            return Err(error);
        }
        if !chunk.is_object() {
            return Err(ModelError::BadAnswer(format!("a stream event is {chunk}")));
        }
        if let Some(usage) = usage_of(chunk) {
            self.usage = Some(usage);
        }
        let Some(delta) = chunk.pointer("/choices/0/delta") else { return Ok(None) };
        if let Some(calls) = delta["tool_calls"].as_array() {
            for (i, call) in calls.iter().enumerate() {
                let index = call["index"].as_u64().unwrap_or(i as u64);
                let entry = self.tools.entry(index).or_default();
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    entry.name.push_str(name);
                }
                match call.pointer("/function/arguments") {
                    Some(Value::String(s)) => entry.arguments.push_str(s),
                    Some(v @ Value::Object(_)) => entry.arguments.push_str(&v.to_string()),
                    _ => {}
                }
            }
        }
        Ok(delta["content"].as_str().filter(|s| !s.is_empty()).map(str::to_string))
    }

    pub fn tool_calls(&self) -> Vec<ToolCall> {
        self.tools.values().filter(|t| !t.name.is_empty()).cloned().collect()
    }
}

/// Splits a byte stream of server-sent events into their `data` payloads. Bytes may be
/// cut anywhere (in a line, in a UTF-8 character); lines end with LF or CRLF; the lines of a
/// multi-line event are joined with LF; comments and other fields are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Adds bytes; returns the data of the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, &mut out);
            } else {
                self.line.push(b);
            }
        }
        out
    }

    /// The end of the stream: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.line_done(&line, &mut out);
        }
        out.extend(self.data.take());
        out
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<String>) {
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        if line.is_empty() {
            out.extend(self.data.take());
            return;
        }
        let Some(value) = line.strip_prefix("data:") else { return };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match &mut self.data {
            Some(data) => {
                data.push('\n');
                data.push_str(value);
            }
            None => self.data = Some(value.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_survive_any_cut_of_the_bytes() {
        let stream =
            "data: {\"a\":\"你好\"}\n\n: keep-alive\r\n\r\nevent: x\ndata: {\"b\":1}\r\n\r\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut p = SseParser::default();
            let mut out = p.push(&bytes[..cut]);
            out.extend(p.push(&bytes[cut..]));
            out.extend(p.finish());
            assert_eq!(out, ["{\"a\":\"你好\"}", "{\"b\":1}", "[DONE]"], "cut at {cut}");
        }
        // Byte by byte.
        let mut p = SseParser::default();
        let out: Vec<String> = bytes.iter().flat_map(|b| p.push(&[*b])).collect();
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn multi_line_events_are_joined_and_an_unclosed_last_event_counts() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: a\ndata:b\n\ndata: c"), ["a\nb"]);
        assert_eq!(p.finish(), ["c"]);
    }

    #[test]
    fn streamed_tool_calls_are_put_together_from_their_fragments() {
        let mut acc = ChunkAccumulator::default();
        let chunks = [
            json!({"choices":[{"index":0,"delta":{"role":"assistant","content":"好的，"}}]}),
            json!({"choices":[{"index":0,"delta":{"content":"再见。"}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"end_call","arguments":""}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"intent\":"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"已确认\"}"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            json!({"choices":[],"usage":{"prompt_tokens":120,"completion_tokens":15,"total_tokens":135}}),
        ];
        let text: String = chunks.iter().filter_map(|c| acc.add(c).unwrap()).collect();
        assert_eq!(text, "好的，再见。");
        assert_eq!(
            acc.tool_calls(),
            [ToolCall { name: "end_call".into(), arguments: "{\"intent\":\"已确认\"}".into() }]
        );
        assert_eq!(acc.usage, Some(Usage { prompt: 120, completion: 15 }));
    }

    #[test]
    fn an_error_event_in_a_stream_is_an_error() {
        let mut acc = ChunkAccumulator::default();
        assert!(
            matches!(acc.add(&json!({"error":{"message":"overloaded"}})), Err(ModelError::Api(m)) if m == "overloaded")
        );
        assert!(matches!(acc.add(&json!([1])), Err(ModelError::BadAnswer(_))));
    }

    #[test]
    fn a_whole_answer_gives_its_text_tool_calls_and_usage() {
        let answer = json!({
            "choices": [{"index":0,"message":{"role":"assistant","content":"再见。","tool_calls":[
                {"id":"c1","type":"function","function":{"name":"end_call","arguments":"{\"intent\":\"拒绝\"}"}}
            ]},"finish_reason":"tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}
        });
        let (text, tools, usage) = parse_whole(&answer).unwrap();
        assert_eq!(text, "再见。");
        assert_eq!(tools, [ToolCall { name: "end_call".into(), arguments: "{\"intent\":\"拒绝\"}".into() }]);
        assert_eq!(usage, Some(Usage { prompt: 10, completion: 3 }));
        assert!(matches!(parse_whole(&json!({"choices": []})), Err(ModelError::BadAnswer(_))));
        assert!(matches!(parse_whole(&json!({"error": {"message": "x"}})), Err(ModelError::Api(_))));
    }

    #[test]
    fn the_request_carries_the_model_tools_and_usage_option_as_configured() {
        let mut settings = LlmSettings { model: "qwen".into(), ..LlmSettings::default() };
        let body = ChatClient::new(&settings).body(&[Message::system("s"), Message::user("u")]);
        assert_eq!(body["model"], "qwen");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["tools"][0]["function"]["name"], "end_call");
        assert_eq!(body["messages"], json!([{"role":"system","content":"s"},{"role":"user","content":"u"}]));

        settings.model.clear();
        settings.stream = false;
        settings.tools = false;
        let body = ChatClient::new(&settings).body(&[]);
        assert!(
            body.get("model").is_none()
                && body.get("stream_options").is_none()
                && body.get("tools").is_none()
        );
    }
}
