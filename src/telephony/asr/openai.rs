//! `asr.engine = "openai"`: one multipart POST per turn to `{url}/audio/transcriptions`.

use std::fmt;
use std::io::Cursor;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Asr, AsrError, AsrSettings};
use crate::recording::SAMPLE_RATE;

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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use axum::http::{HeaderMap, StatusCode};
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::telephony::asr::AsrEngine;

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
            ..AsrSettings::default()
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
}
