//! A FunASR runtime as the tests' recogniser: a websocket server speaking the runtime's
//! documented protocol (its `runtime/docs/websocket_protocol.md`): a JSON opening frame,
//! binary PCM frames, `{"is_speaking": false}`; `2pass-online` partial texts while audio
//! comes (one per 0.4 s of it) and a `2pass-offline` text, `is_final`, after the end of
//! speech. It recognises nothing: each turn's text is the one the test gives, and it keeps
//! what each connection sent for the test to check.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// What one connection sent.
#[derive(Debug, Clone, Default)]
pub struct TurnSeen {
    pub opening: Value,
    pub audio_frames: usize,
    pub audio_bytes: usize,
    /// From the first audio frame to the last: a turn streamed as it was spoken spans
    /// about the speech's length; one sent at its end, a moment.
    pub audio_span: std::time::Duration,
    pub ended: bool,
}

pub struct FunasrPeer {
    pub url: String,
    turns: Arc<Mutex<Vec<TurnSeen>>>,
}

/// 0.4 s of 8 kHz 16-bit audio.
const PARTIAL_EVERY: usize = 6400;

impl FunasrPeer {
    /// Answers every turn with `partials` (in order, while audio comes) and then `final_text`.
    pub async fn start(partials: &[&str], final_text: &str) -> FunasrPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let turns = Arc::new(Mutex::new(Vec::new()));
        let partials: Vec<String> = partials.iter().map(|p| p.to_string()).collect();
        let final_text = final_text.to_string();
        let seen = turns.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, partials, final_text) = (seen.clone(), partials.clone(), final_text.clone());
                tokio::spawn(async move {
                    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { return };
                    let turn = serve(socket, &partials, &final_text).await;
                    // A connection closed before any audio is a listen nobody spoke in.
                    if turn.audio_frames > 0 {
                        seen.lock().unwrap().push(turn);
                    }
                });
            }
        });
        FunasrPeer { url: format!("ws://{addr}"), turns }
    }

    /// The turns that carried audio, in the order they ended.
    pub fn turns(&self) -> Vec<TurnSeen> {
        self.turns.lock().unwrap().clone()
    }
}

async fn serve(
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    partials: &[String],
    final_text: &str,
) -> TurnSeen {
    let (mut tx, mut rx) = socket.split();
    let mut turn = TurnSeen::default();
    let mut first_audio: Option<Instant> = None;
    let mut next_partial = partials.iter();
    let answer = |mode: &str, text: &str, is_final: bool| {
        Message::text(
            json!({ "mode": mode, "wav_name": "turn", "text": text, "is_final": is_final }).to_string(),
        )
    };
    while let Some(Ok(message)) = rx.next().await {
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if turn.opening.is_null() {
                    turn.opening = value;
                } else if value["is_speaking"] == false {
                    turn.ended = true;
                    let _ = tx.send(answer("2pass-offline", final_text, true)).await;
                }
            }
            Message::Binary(pcm) => {
                let now = Instant::now();
                turn.audio_span = now - *first_audio.get_or_insert(now);
                let before = turn.audio_bytes / PARTIAL_EVERY;
                turn.audio_frames += 1;
                turn.audio_bytes += pcm.len();
                if turn.audio_bytes / PARTIAL_EVERY > before
                    && let Some(partial) = next_partial.next()
                {
                    let _ = tx.send(answer("2pass-online", partial, false)).await;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    turn
}
