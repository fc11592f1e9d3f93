//! `asr.engine = "funasr"`: the FunASR runtime's websocket protocol, in its `2pass` mode.
//! A connection per turn, opened as `listen` starts: a JSON frame of settings, the turn's
//! PCM as binary frames while the callee speaks, `{"is_speaking": false}` when the turn
//! ends; the server answers with `2pass-online` partial texts during the speech and a
//! `2pass-offline` text, corrected by its offline model, for each sentence.

use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{Asr, AsrError, AsrSettings, AsrStream};
use crate::recording::SAMPLE_RATE;

pub struct FunAsr {
    url: String,
    hotwords: String,
    timeout: Duration,
}

impl FunAsr {
    pub fn new(settings: &AsrSettings) -> FunAsr {
        FunAsr {
            url: settings.url.clone(),
            hotwords: settings.hotwords.clone(),
            timeout: Duration::from_millis(settings.timeout_ms),
        }
    }

    /// The first frame: the mode, the audio's format and rate, and the hotwords.
    fn opening(&self) -> String {
        let mut first = json!({
            "mode": "2pass",
            "wav_name": "turn",
            "wav_format": "pcm",
            "audio_fs": SAMPLE_RATE,
            "is_speaking": true,
            "chunk_size": [5, 10, 5],
            "chunk_interval": 10,
            "itn": true,
        });
        if !self.hotwords.is_empty() {
            first["hotwords"] = self.hotwords.clone().into();
        }
        first.to_string()
    }
}

#[async_trait]
impl Asr for FunAsr {
    async fn recognize(&self, pcm: &[i16], _speech: Duration) -> Result<String, AsrError> {
        let mut stream = self.stream().expect("FunASR always streams");
        stream.push(pcm);
        stream.finish().await
    }

    fn engine(&self) -> &'static str {
        "funasr"
    }

    fn stream(&self) -> Option<Box<dyn AsrStream>> {
        let (audio, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(converse(self.url.clone(), self.opening(), frames));
        Some(Box::new(Turn { audio: Some(audio), task, timeout: self.timeout }))
    }
}

/// A turn being streamed: the audio goes to the connection's task through `audio`; closing
/// it ends the turn.
struct Turn {
    audio: Option<mpsc::UnboundedSender<Vec<u8>>>,
    task: JoinHandle<Result<String, AsrError>>,
    timeout: Duration,
}

#[async_trait]
impl AsrStream for Turn {
    fn push(&mut self, pcm: &[i16]) {
        let bytes = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        if let Some(audio) = &self.audio {
            // A closed channel means the connection failed: `finish` says how.
            let _ = audio.send(bytes);
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<String, AsrError> {
        self.audio = None;
        match tokio::time::timeout(self.timeout, &mut self.task).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => Err(AsrError(format!("funasr: the connection's task failed: {e}"))),
            Err(_) => Err(AsrError(format!("funasr: no final text within {:?}", self.timeout))),
        }
    }
}

impl Drop for Turn {
    /// A turn dropped unfinished (nobody spoke, the callee hung up) closes its connection.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One result frame: the fields this client reads.
#[derive(Deserialize)]
struct Answer {
    mode: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    is_final: bool,
}

/// The turn's text as the results come: each sentence's offline text replaces the partial
/// texts heard of it so far.
#[derive(Default, Debug, PartialEq)]
struct Heard {
    sentences: String,
    partial: String,
}

impl Heard {
    fn take(&mut self, result: &Answer) {
        if result.mode.ends_with("offline") {
            self.sentences.push_str(&result.text);
            self.partial.clear();
        } else {
            self.partial.push_str(&result.text);
        }
    }

    fn text(&self) -> String {
        format!("{}{}", self.sentences, self.partial).trim().to_string()
    }
}

/// Connects, sends the opening frame and the audio as it comes, then the end of speech,
/// and reads results until the final one (or the server closes).
async fn converse(
    url: String,
    opening: String,
    mut audio: mpsc::UnboundedReceiver<Vec<u8>>,
) -> Result<String, AsrError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| AsrError(format!("funasr {url}: {what}: {e}"));
    let (socket, _) =
        tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| failed("connecting", &e))?;
    let (mut tx, mut rx) = socket.split();
    tx.send(Message::text(opening)).await.map_err(|e| failed("sending", &e))?;
    let mut heard = Heard::default();
    let mut speaking = true;
    loop {
        tokio::select! {
            pcm = audio.recv(), if speaking => {
                let frame = match pcm {
                    Some(pcm) => Message::binary(pcm),
                    None => {
                        speaking = false;
                        Message::text(json!({ "is_speaking": false }).to_string())
                    }
                };
                tx.send(frame).await.map_err(|e| failed("sending", &e))?;
            }
            message = rx.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None if !speaking => return Ok(heard.text()),
                    Some(Ok(Message::Close(_))) | None => return Err(failed("closed", &"during the turn")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(failed("reading", &e)),
                };
                let result: Answer = serde_json::from_str(&text).map_err(|e| failed("a bad result", &e))?;
                heard.take(&result);
                // After the end of speech, the offline text of the last sentence (or a
                // result marked final) is the last one.
                if !speaking && (result.is_final || result.mode.ends_with("offline")) {
                    let _ = tx.close().await;
                    return Ok(heard.text());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(mode: &str, text: &str) -> Answer {
        Answer { mode: mode.into(), text: text.into(), is_final: false }
    }

    #[test]
    fn offline_sentences_replace_the_partial_texts_heard_of_them() {
        let mut heard = Heard::default();
        heard.take(&result("2pass-online", "请明"));
        heard.take(&result("2pass-online", "天"));
        assert_eq!(heard.text(), "请明天");
        heard.take(&result("2pass-offline", "请明天上午，"));
        heard.take(&result("2pass-online", "再打"));
        assert_eq!(heard.text(), "请明天上午，再打");
        heard.take(&result("2pass-offline", "再打来。"));
        assert_eq!(heard.text(), "请明天上午，再打来。");
    }

    #[test]
    fn the_opening_frame_names_the_mode_the_format_and_the_rate() {
        let settings = AsrSettings { hotwords: r#"{"工单": 20}"#.into(), ..AsrSettings::default() };
        let first: serde_json::Value = serde_json::from_str(&FunAsr::new(&settings).opening()).unwrap();
        assert_eq!(first["mode"], "2pass");
        assert_eq!(first["wav_format"], "pcm");
        assert_eq!(first["audio_fs"], 8000);
        assert_eq!(first["is_speaking"], true);
        assert_eq!(first["chunk_size"], json!([5, 10, 5]));
        assert_eq!(first["hotwords"], r#"{"工单": 20}"#);
        let plain = FunAsr::new(&AsrSettings::default()).opening();
        assert!(!plain.contains("hotwords"), "{plain}");
    }
}
