//! Speech recognition for `listen`, shared by the carriers that carry real audio: the
//! `[asr]` section, the `Asr` trait and its engines — none (a turn is heard as
//! `[语音 N秒]`), an OpenAI-compatible transcription server, or a command-line program.

use std::fmt;
use std::io::Cursor;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::recording::SAMPLE_RATE;

/// Which recogniser hears the callee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AsrEngine {
    /// None: a turn is heard as its length, `[语音 N秒]`.
    #[default]
    None,
    /// `POST {url}/audio/transcriptions`, the OpenAI-compatible protocol that whisper.cpp's
    /// server, faster-whisper servers, vLLM, LocalAI and hosted APIs speak.
    Openai,
    /// A program run per turn.
    Command,
}

/// The `[asr]` section.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsrSettings {
    pub engine: AsrEngine,
    /// `openai`: the server's base URL, such as `http://127.0.0.1:8080/v1`.
    pub url: String,
    /// `openai`: sent as `Authorization: Bearer`; empty sends none.
    pub api_key: String,
    /// `openai`: the `model` field.
    pub model: String,
    /// `openai`: the `language` field (ISO 639-1); empty lets the server guess.
    pub language: String,
    /// How long one turn's recognition may take; past it the turn is heard as
    /// `[语音 N秒]`.
    pub timeout_ms: u64,
    /// `command`: program and arguments, `{wav}` replaced by the turn's audio (8 kHz mono
    /// WAV); it prints the text.
    pub command: Vec<String>,
}

impl Default for AsrSettings {
    fn default() -> Self {
        AsrSettings {
            engine: AsrEngine::None,
            url: String::new(),
            api_key: String::new(),
            model: "whisper-1".into(),
            language: "zh".into(),
            timeout_ms: 5000,
            command: Vec::new(),
        }
    }
}

impl fmt::Debug for AsrSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsrSettings")
            .field("engine", &self.engine)
            .field("url", &self.url)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "(hidden)" })
            .field("model", &self.model)
            .field("language", &self.language)
            .field("timeout_ms", &self.timeout_ms)
            .field("command", &self.command)
            .finish()
    }
}

impl AsrSettings {
    /// What the types alone do not say; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("asr.timeout_ms must be between 100 and 60000".into());
        }
        match self.engine {
            AsrEngine::Openai if !(self.url.starts_with("http://") || self.url.starts_with("https://")) => {
                Err("asr.url must be an http:// or https:// URL when asr.engine = \"openai\"".into())
            }
            AsrEngine::Command if self.command.is_empty() => {
                Err("asr.command must name a program when asr.engine = \"command\"".into())
            }
            _ => Ok(()),
        }
    }
}

/// The recogniser `[asr]` names.
pub fn recogniser(settings: &AsrSettings) -> Arc<dyn Asr> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    match settings.engine {
        AsrEngine::None => Arc::new(Placeholder),
        AsrEngine::Openai => Arc::new(OpenAiAsr::new(settings)),
        AsrEngine::Command => Arc::new(CommandAsr { argv: settings.command.clone(), timeout }),
    }
}

/// Turns one turn of the callee's speech into text. Implement it to plug in a recogniser
/// of your own; the SIP carrier takes any `Arc<dyn Asr>` (`SipCarrier::with_engines`).
#[async_trait]
pub trait Asr: Send + Sync + 'static {
    /// `pcm` is 8 kHz mono 16-bit, from the start of the turn to its last loud frame;
    /// `speech` is how long the callee spoke.
    async fn recognize(&self, pcm: &[i16], speech: Duration) -> Result<String, AsrError>;

    /// The engine's name, for the log and the metrics.
    fn engine(&self) -> &'static str;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AsrError(String);

/// No recogniser: the text is the length of what was said, `[语音 3秒]`.
pub struct Placeholder;

#[async_trait]
impl Asr for Placeholder {
    async fn recognize(&self, _pcm: &[i16], speech: Duration) -> Result<String, AsrError> {
        Ok(placeholder(speech))
    }

    fn engine(&self) -> &'static str {
        "none"
    }
}

/// `[语音 N秒]`, N rounded and at least 1.
pub fn placeholder(speech: Duration) -> String {
    format!("[语音 {}秒]", speech.as_secs_f64().round().max(1.0) as u64)
}

/// An OpenAI-compatible transcription server: one multipart POST per turn (`file` as an
/// 8 kHz WAV, `model`, `language`, `response_format=json`), over connections kept alive
/// between turns and calls.
pub struct OpenAiAsr {
    client: reqwest::Client,
    endpoint: String,
    api_key: String,
    model: String,
    language: String,
}

impl OpenAiAsr {
    pub fn new(settings: &AsrSettings) -> OpenAiAsr {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("callcenter/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with a timeout and a user agent builds");
        OpenAiAsr {
            client,
            endpoint: format!("{}/audio/transcriptions", settings.url.trim_end_matches('/')),
            api_key: settings.api_key.clone(),
            model: settings.model.clone(),
            language: settings.language.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

#[async_trait]
impl Asr for OpenAiAsr {
    async fn recognize(&self, pcm: &[i16], _speech: Duration) -> Result<String, AsrError> {
        let failed = |what: &str, e: &dyn fmt::Display| AsrError(format!("{}: {what}: {e}", self.endpoint));
        let wav = wav_bytes(pcm).map_err(|e| failed("encoding the turn", &e))?;
        let file = reqwest::multipart::Part::bytes(wav)
            .file_name("turn.wav")
            .mime_str("audio/wav")
            .expect("audio/wav is a valid MIME type");
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        if !self.language.is_empty() {
            form = form.text("language", self.language.clone());
        }
        let mut request = self.client.post(&self.endpoint).multipart(form);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        let response = request.send().await.map_err(|e| failed("no answer", &e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(failed("refused", &format!("{status} {body}")));
        }
        let answer: Transcription = response.json().await.map_err(|e| failed("a bad answer", &e))?;
        Ok(answer.text.trim().to_string())
    }

    fn engine(&self) -> &'static str {
        "openai"
    }
}

/// The turn as a WAV file in memory (8 kHz mono 16-bit).
fn wav_bytes(pcm: &[i16]) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + pcm.len() * 2));
    let mut writer = hound::WavWriter::new(&mut out, spec)?;
    let mut samples = writer.get_i16_writer(pcm.len() as u32);
    pcm.iter().for_each(|&s| samples.write_sample(s));
    samples.flush()?;
    writer.finalize()?;
    Ok(out.into_inner())
}

/// Runs `argv` with `{wav}` replaced by a temporary 8 kHz mono WAV of the turn; its
/// standard output, trimmed, is the text. A run longer than `timeout` is killed.
pub struct CommandAsr {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

#[async_trait]
impl Asr for CommandAsr {
    async fn recognize(&self, pcm: &[i16], _speech: Duration) -> Result<String, AsrError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(AsrError("asr.command is empty".into()));
        };
        let failed = |detail: &dyn fmt::Display| AsrError(format!("`{program}` could not run: {detail}"));
        let path = std::env::temp_dir().join(format!(
            "callcenter-asr-{}-{}.wav",
            std::process::id(),
            rand::random::<u64>()
        ));
        let pcm = pcm.to_vec();
        let wav = path.clone();
        tokio::task::spawn_blocking(move || crate::recording::write_wav(&wav, &pcm))
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        let wav_arg = path.display().to_string();
        let run = tokio::process::Command::new(program)
            .args(args.iter().map(|a| a.replace("{wav}", &wav_arg)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.timeout, run).await;
        let _ = std::fs::remove_file(&path);
        let out = out.map_err(|_| failed(&format!("no answer within {:?}", self.timeout)))?;
        let out = out.map_err(|e| failed(&e))?;
        if !out.status.success() {
            return Err(failed(&format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn engine(&self) -> &'static str {
        "command"
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use axum::http::{HeaderMap, StatusCode};
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;

    #[test]
    fn the_placeholder_gives_the_rounded_length_in_seconds() {
        assert_eq!(placeholder(Duration::from_millis(2600)), "[语音 3秒]");
        assert_eq!(placeholder(Duration::from_millis(300)), "[语音 1秒]");
    }

    #[test]
    fn settings_an_engine_cannot_work_with_are_named() {
        let ok = AsrSettings::default();
        assert_eq!(ok.validate(), Ok(()));
        let openai = AsrSettings { engine: AsrEngine::Openai, ..AsrSettings::default() };
        assert!(openai.validate().unwrap_err().contains("asr.url"));
        let command = AsrSettings { engine: AsrEngine::Command, ..AsrSettings::default() };
        assert!(command.validate().unwrap_err().contains("asr.command"));
        let slow = AsrSettings { timeout_ms: 10, ..AsrSettings::default() };
        assert!(slow.validate().unwrap_err().contains("asr.timeout_ms"));
        let key = AsrSettings { api_key: "sk-secret".into(), ..AsrSettings::default() };
        assert!(!format!("{key:?}").contains("sk-secret"));
    }

    #[test]
    fn a_turn_is_sent_as_an_8_khz_mono_wav() {
        let bytes = wav_bytes(&[0, 1000, -1000, 32767]).unwrap();
        let reader = hound::WavReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!((reader.spec().sample_rate, reader.spec().channels), (8000, 1));
        let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        assert_eq!(samples, [0, 1000, -1000, 32767]);
    }

    /// What the server got: the client's address, the headers, the body.
    type Sent = (SocketAddr, HeaderMap, bytes::Bytes);

    /// A transcription server on loopback that answers `status` and `body` after `delay`,
    /// and hands each request to the test.
    async fn server(status: u16, body: &'static str, delay: Duration) -> (String, UnboundedReceiver<Sent>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let transcribe = move |ConnectInfo(from): ConnectInfo<SocketAddr>, headers: HeaderMap, sent| async move {
            let _ = tx.send((from, headers, sent));
            tokio::time::sleep(delay).await;
            (StatusCode::from_u16(status).unwrap(), body)
        };
        let app = axum::Router::new().route("/v1/audio/transcriptions", axum::routing::post(transcribe));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/", listener.local_addr().unwrap());
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, rx)
    }

    fn openai(url: String, timeout_ms: u64) -> OpenAiAsr {
        OpenAiAsr::new(&AsrSettings {
            engine: AsrEngine::Openai,
            url,
            api_key: "sk-test".into(),
            model: "tiny.en".into(),
            language: "en".into(),
            timeout_ms,
            command: Vec::new(),
        })
    }

    #[tokio::test]
    async fn the_openai_engine_posts_the_turn_as_a_form_and_reads_the_text() {
        let (url, mut sent) = server(200, r#"{"text": " call me tomorrow "}"#, Duration::ZERO).await;
        let asr = openai(url, 5000);
        let text = asr.recognize(&[100; 800], Duration::from_millis(100)).await.unwrap();
        assert_eq!(text, "call me tomorrow");

        let (from, headers, body) = sent.recv().await.unwrap();
        assert_eq!(headers["authorization"], "Bearer sk-test");
        assert!(headers["content-type"].to_str().unwrap().starts_with("multipart/form-data; boundary="));
        let body = String::from_utf8_lossy(&body);
        for field in [
            "name=\"file\"; filename=\"turn.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF",
            "name=\"model\"\r\n\r\ntiny.en\r\n",
            "name=\"language\"\r\n\r\nen\r\n",
            "name=\"response_format\"\r\n\r\njson\r\n",
        ] {
            assert!(body.contains(field), "{field:?} not in {body:.300}");
        }
        // The second turn goes over the same connection.
        asr.recognize(&[100; 800], Duration::from_millis(100)).await.unwrap();
        let (again_from, _, _) = sent.recv().await.unwrap();
        assert_eq!(again_from, from);
    }

    #[tokio::test]
    async fn a_refusal_a_bad_answer_or_a_slow_server_is_an_error_naming_it() {
        let (url, _sent) = server(500, "model not loaded", Duration::ZERO).await;
        let err = openai(url, 5000).recognize(&[0; 160], Duration::ZERO).await.unwrap_err().to_string();
        assert!(err.contains("500") && err.contains("model not loaded"), "{err}");

        let (url, _sent) = server(200, "<html>", Duration::ZERO).await;
        let err = openai(url, 5000).recognize(&[0; 160], Duration::ZERO).await.unwrap_err().to_string();
        assert!(err.contains("a bad answer"), "{err}");

        let (url, _sent) = server(200, r#"{"text": "late"}"#, Duration::from_secs(30)).await;
        let err = openai(url, 300).recognize(&[0; 160], Duration::ZERO).await.unwrap_err().to_string();
        assert!(err.contains("no answer"), "{err}");
    }

    #[tokio::test]
    async fn a_command_recogniser_gets_a_wav_and_its_output_is_the_text() {
        // `sh -c` stands in for a recogniser: it checks the WAV exists and prints text.
        let timeout = Duration::from_secs(10);
        let argv =
            ["sh", "-c", "test -s \"$0\" && echo ' 好的，知道了 '", "{wav}"].map(String::from).to_vec();
        let text =
            CommandAsr { argv, timeout }.recognize(&[100; 8000], Duration::from_secs(1)).await.unwrap();
        assert_eq!(text, "好的，知道了");

        let broken = CommandAsr { argv: vec!["sh".into(), "-c".into(), "exit 3".into()], timeout };
        assert!(broken.recognize(&[0; 160], Duration::from_millis(20)).await.is_err());

        let stuck =
            CommandAsr { argv: vec!["sleep".into(), "30".into()], timeout: Duration::from_millis(200) };
        let err = stuck.recognize(&[0; 160], Duration::from_millis(20)).await.unwrap_err();
        assert!(err.to_string().contains("no answer within"), "{err}");
    }
}
