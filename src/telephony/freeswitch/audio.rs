//! The callee's audio, streamed by FreeSWITCH to a websocket of the server's, for the ear
//! (`[asr]`, VAD, barge-in) the SIP carrier has too.
//!
//! Right after the answer the server asks FreeSWITCH to stream the call:
//!
//! ```text
//! api uuid_audio_stream <uuid> start ws://<freeswitch.audio_url>/<uuid>/<token> mono 8k {"callId":"<uuid>"}
//! ```
//!
//! (`uuid_audio_fork` with the same arguments for mod_audio_fork, which also asks for the
//! websocket subprotocol `audiostream.drachtio.org`). The module connects, sends the
//! metadata as a text frame, then binary frames of 16-bit little-endian PCM, 8 kHz, one
//! channel: with `mono`, the audio FreeSWITCH reads from the channel, which is the callee's
//! side only (our own speech never reaches the ear). The path's token, random per call,
//! keeps anyone else who can reach the port from feeding a call.
//!
//! Hand-written over tokio-tungstenite because the two modules' protocol is this one
//! convention (a path, raw PCM frames), with no crate of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::recording::SAMPLE_RATE;

/// Samples in one 20 ms frame at 8 kHz: what the ear takes at a time.
const FRAME: usize = SAMPLE_RATE as usize / 50;
/// Frames a call's audio may queue before the oldest are dropped (a stalled reader must
/// not grow memory); two seconds.
const BACKLOG: usize = 100;
/// mod_audio_fork's subprotocol.
const FORK_PROTOCOL: &str = "audiostream.drachtio.org";

/// The FreeSWITCH module that streams the call (`freeswitch.audio_module`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudioModule {
    #[serde(rename = "mod_audio_stream")]
    AudioStream,
    #[serde(rename = "mod_audio_fork")]
    AudioFork,
}

impl AudioModule {
    fn command(self) -> &'static str {
        match self {
            AudioModule::AudioStream => "uuid_audio_stream",
            AudioModule::AudioFork => "uuid_audio_fork",
        }
    }
}

/// Calls whose audio is expected: uuid → (token, where the frames go).
type Expected = Arc<Mutex<HashMap<String, (String, mpsc::Sender<Vec<i16>>)>>>;

/// The websocket FreeSWITCH streams every call's audio to.
pub struct AudioIn {
    url: String,
    module: AudioModule,
    expected: Expected,
}

/// One call's audio as it arrives, in 20 ms frames; the call is no longer expected once
/// this is dropped.
pub struct CallAudio {
    pub frames: mpsc::Receiver<Vec<i16>>,
    uuid: String,
    expected: Expected,
}

impl Drop for CallAudio {
    fn drop(&mut self) {
        self.expected.lock().expect("audio calls lock").remove(&self.uuid);
    }
}

impl AudioIn {
    /// Listens on `listen` (needs a Tokio runtime); FreeSWITCH reaches it at `url`
    /// (`ws://host:port`), or where it listens.
    pub fn bind(listen: SocketAddr, url: Option<&str>, module: AudioModule) -> std::io::Result<AudioIn> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let url = match url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("ws://{}", listener.local_addr()?),
        };
        let expected = Expected::default();
        tokio::spawn(accept(listener, expected.clone()));
        tracing::info!(%listen, url, ?module, "FreeSWITCH audio: listening for call audio streams");
        Ok(AudioIn { url, module, expected })
    }

    /// Expects the call's audio: the API command that asks FreeSWITCH to stream it, and
    /// where its frames will arrive.
    pub fn expect(&self, uuid: &str) -> (String, CallAudio) {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let (tx, frames) = mpsc::channel(BACKLOG);
        self.expected.lock().expect("audio calls lock").insert(uuid.to_string(), (token.clone(), tx));
        let command = format!(
            "{} {uuid} start {}/{uuid}/{token} mono 8k {{\"callId\":\"{uuid}\"}}",
            self.module.command(),
            self.url
        );
        (command, CallAudio { frames, uuid: uuid.to_string(), expected: self.expected.clone() })
    }
}

async fn accept(listener: TcpListener, expected: Expected) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(receive(stream, peer, expected.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "FreeSWITCH audio: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One call's stream: the handshake names the call, then its frames go to the ear.
async fn receive(stream: TcpStream, peer: SocketAddr, expected: Expected) {
    let mut call = None;
    // The callback's type is the library's, large error and all.
    #[allow(clippy::result_large_err)]
    let handshake = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let found = request.uri().path().trim_start_matches('/').split_once('/').and_then(|(uuid, token)| {
            let calls = expected.lock().expect("audio calls lock");
            let (expected_token, tx) = calls.get(uuid)?;
            (expected_token == token).then(|| (uuid.to_string(), tx.clone()))
        });
        let Some(found) = found else {
            let mut refused = ErrorResponse::new(Some("no such call".into()));
            *refused.status_mut() = StatusCode::NOT_FOUND;
            return Err(refused);
        };
        call = Some(found);
        let offered = request.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok());
        if offered.is_some_and(|p| p.split(',').any(|p| p.trim() == FORK_PROTOCOL)) {
            response.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(FORK_PROTOCOL));
        }
        Ok(response)
    };
    let mut ws = match tokio_tungstenite::accept_hdr_async(stream, handshake).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "FreeSWITCH audio: refused a stream");
            return;
        }
    };
    let Some((uuid, tx)) = call else { return };
    tracing::debug!(call_id = %uuid, %peer, "FreeSWITCH audio: streaming");
    let mut pcm = Pcm::default();
    while let Some(message) = ws.next().await {
        match message {
            Ok(Message::Binary(bytes)) => {
                for frame in pcm.frames(&bytes) {
                    match tx.try_send(frame) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        // The call is over: so is its stream.
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
            // The metadata, heartbeats, pings (answered by the library).
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(call_id = %uuid, error = %e, "FreeSWITCH audio: the stream broke");
                break;
            }
        }
    }
    tracing::debug!(call_id = %uuid, "FreeSWITCH audio: stream ended");
}

/// Little-endian 16-bit samples cut into 20 ms frames, whatever the sizes of the
/// websocket messages (an odd byte or part of a frame waits for the next).
#[derive(Default)]
struct Pcm {
    odd_byte: Option<u8>,
    partial: Vec<i16>,
}

impl Pcm {
    fn frames(&mut self, bytes: &[u8]) -> Vec<Vec<i16>> {
        let mut bytes = bytes.iter().copied();
        if let Some(low) = self.odd_byte.take() {
            match bytes.next() {
                Some(high) => self.partial.push(i16::from_le_bytes([low, high])),
                None => self.odd_byte = Some(low),
            }
        }
        let rest: Vec<u8> = bytes.collect();
        let mut pairs = rest.chunks_exact(2);
        self.partial.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.odd_byte = pairs.remainder().first().copied();
        let whole = self.partial.len() / FRAME * FRAME;
        let frames = self.partial[..whole].chunks(FRAME).map(<[i16]>::to_vec).collect();
        self.partial.drain(..whole);
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn messages_of_any_size_give_the_same_20_ms_frames() {
        let samples: Vec<i16> = (0..FRAME as i16 * 3 + 7).map(|i| i * 11 - 900).collect();
        let bytes = le(&samples);
        let mut whole = Pcm::default();
        let at_once = whole.frames(&bytes);
        assert_eq!(at_once.len(), 3);
        assert_eq!(at_once.concat(), samples[..FRAME * 3]);
        // Odd splits: a sample's two bytes in two messages.
        let mut split = Pcm::default();
        let pieces: Vec<Vec<i16>> = bytes.chunks(101).flat_map(|piece| split.frames(piece)).collect();
        assert_eq!(pieces, at_once);
    }

    #[test]
    fn the_command_names_the_module_the_call_and_its_token() {
        let expected = Expected::default();
        let audio = AudioIn { url: "ws://10.0.0.5:8091".into(), module: AudioModule::AudioFork, expected };
        let (command, call) = audio.expect("2508162111590110005");
        let token = audio.expected.lock().unwrap()["2508162111590110005"].0.clone();
        assert_eq!(
            command,
            format!(
                "uuid_audio_fork 2508162111590110005 start ws://10.0.0.5:8091/2508162111590110005/{token} \
                 mono 8k {{\"callId\":\"2508162111590110005\"}}"
            )
        );
        drop(call);
        assert!(audio.expected.lock().unwrap().is_empty(), "a call that ended is no longer expected");
    }
}
