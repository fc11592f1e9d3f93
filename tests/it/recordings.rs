//! `GET /recordings/files?filename=…`: the WAV of an answered call, as a player or the
//! spec's H5 page fetches it from `wavFileUrl`.

use std::io::Cursor;
use std::time::Duration;

use crate::common::{TestServer, ticket};
use chrono::NaiveDateTime;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use serde_json::{Value, json};

fn secs(t: &str) -> f64 {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp() as f64
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

/// Starts a server whose calls all answer, makes one call and returns its record.
async fn answered_call(
    time_scale: f64,
    tweak: impl FnOnce(&mut callcenter::config::Settings),
) -> (TestServer, Value) {
    let s = TestServer::start_with(|s| {
        s.sim.answer_rate = 1.0;
        s.sim.time_scale = time_scale;
        tweak(s);
    })
    .await;
    s.create(&[ticket("REC-1", "13900001234")]).await;
    s.wait_all_ended(Duration::from_secs(30)).await;
    let rows = s.records(json!({})).await["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let record = rows[0].clone();
    (s, record)
}

fn filename_of(record: &Value) -> String {
    let url = str_of(record, "wavFileUrl");
    url.strip_prefix("/recordings/files?filename=")
        .unwrap_or_else(|| panic!("unexpected wavFileUrl {url}"))
        .to_string()
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// GETs the recording endpoint with a raw query string (sent as written).
async fn get_file(s: &TestServer, query: &str) -> reqwest::Response {
    s.get(&format!("/recordings/files?{query}")).await
}

async fn envelope_code(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not the JSON envelope: {text:.200}"));
    (status, v)
}

#[tokio::test]
async fn an_answered_call_is_recorded_as_an_8khz_16_bit_wav_as_long_as_its_talk_time() {
    let (s, r) = answered_call(0.1, |_| {}).await;
    let res = s.get(str_of(&r, "wavFileUrl")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], "audio/wav");
    let bytes = res.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"RIFF");

    let mut wav = hound::WavReader::new(Cursor::new(bytes.to_vec())).expect("a valid WAV");
    let spec = wav.spec();
    assert_eq!(spec.sample_rate, 8000);
    assert_eq!(spec.channels, 1);
    assert_eq!(spec.bits_per_sample, 16);
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let recorded = samples.len() as f64 / 8000.0;

    // Talk time by the record (whole seconds): from answer to hang-up.
    let talk = secs(str_of(&r, "callEndTime")) - secs(str_of(&r, "answeredTime"));
    assert!(recorded > 0.5, "a call of a few seconds recorded only {recorded} s");
    assert!((recorded - talk).abs() <= 1.0, "recording {recorded:.2} s, talk time {talk} s: {r:#}");
    assert!(rms(&samples) > 300.0, "the recording has voices in it, not just silence");

    // On disk where the URL says, under recordings.dir.
    let on_disk = s.recordings_dir().join(filename_of(&r));
    assert_eq!(std::fs::read(on_disk).unwrap(), bytes.to_vec());
}

#[tokio::test]
async fn a_call_never_answered_has_no_recording() {
    let s = TestServer::start_with(|s| s.dialer.max_attempts = 1).await;
    s.create(&[ticket("NOREC-1", "13900014860"), ticket("NOREC-2", "13900024800")]).await;
    s.wait_all_ended(Duration::from_secs(10)).await;
    for r in s.records(json!({})).await["rows"].as_array().unwrap() {
        assert_eq!(r["wavFileUrl"], "", "{r:#}");
    }
    let wavs =
        walk(&s.recordings_dir()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "wav")).count();
    assert_eq!(wavs, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flat_map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() { walk(&path) } else { vec![path] }
        })
        .collect()
}

#[tokio::test]
async fn wav_file_url_is_absolute_when_public_url_is_set() {
    let (s, r) = answered_call(0.0, |s| s.server.public_url = "http://cc.example.com/".into()).await;
    let url = str_of(&r, "wavFileUrl");
    let filename = url
        .strip_prefix("http://cc.example.com/recordings/files?filename=ai_call/")
        .unwrap_or_else(|| panic!("unexpected wavFileUrl {url}"));
    assert!(filename.ends_with(&format!("/{}.wav", str_of(&r, "uuid"))), "{url}");
    let res = get_file(&s, &format!("filename=ai_call/{filename}")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_range_request_gets_206_with_just_those_bytes() {
    let (s, r) = answered_call(0.05, |_| {}).await;
    let url = str_of(&r, "wavFileUrl");
    let whole = s.get(url).await.bytes().await.unwrap();
    assert!(whole.len() > 300, "{} bytes", whole.len());

    for (range, from, to) in [("bytes=0-43", 0, 43), ("bytes=100-299", 100, 299)] {
        let res = s.client.get(s.url(url)).header(RANGE, range).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(res.headers()[CONTENT_RANGE], format!("bytes {from}-{to}/{}", whole.len()).as_str());
        assert_eq!(res.headers()[CONTENT_TYPE], "audio/wav");
        let part = res.bytes().await.unwrap();
        assert_eq!(part, whole[from..=to], "{range}");
    }

    // The tail, as a player seeking to the end asks for it.
    let res = s.client.get(s.url(url)).header(RANGE, "bytes=-10").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap(), whole[whole.len() - 10..]);

    let res =
        s.client.get(s.url(url)).header(RANGE, format!("bytes={}-", whole.len() + 100)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn a_missing_recording_is_404() {
    let s = TestServer::start().await;
    for query in ["filename=ai_call/2025/08/16/21/2508162111590110001.wav", "filename=nothing.wav"] {
        let (status, v) = envelope_code(get_file(&s, query).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{query}: {v}");
        assert_eq!(v["code"], 404, "{query}: {v}");
    }
}

#[tokio::test]
async fn path_traversal_is_refused_with_code_405() {
    let (s, _) = answered_call(0.0, |_| {}).await;
    // Something worth stealing just outside recordings.dir: the database lies beside it.
    let secret = s.recordings_dir().parent().unwrap().join("secret.wav");
    std::fs::write(&secret, b"RIFF not for you").unwrap();

    for query in [
        "filename=../secret.wav",
        "filename=ai_call/../../secret.wav",
        "filename=ai_call/2025/../../../secret.wav",
        "filename=../callcenter.db",
        "filename=%2e%2e%2fsecret.wav",
        "filename=%2E%2E%2Fsecret.wav",
        "filename=..%2fsecret.wav",
        "filename=%2e%2e/secret.wav",
        "filename=ai_call%2f..%2f..%2fsecret.wav",
        "filename=/etc/passwd",
        "filename=%2fetc%2fpasswd",
        &format!("filename={}", secret.display()),
    ] {
        let (status, v) = envelope_code(get_file(&s, query).await).await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
        assert_eq!(v["code"], 405, "{query}: {v}");
        assert!(!v["msg"].as_str().unwrap().is_empty(), "{query}: {v}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_that_leads_outside_the_recordings_dir_is_refused() {
    let (s, _) = answered_call(0.0, |_| {}).await;
    let outside = s.dir.path().join("outside.wav");
    std::fs::write(&outside, b"RIFF not for you").unwrap();
    let link_dir = s.recordings_dir().join("ai_call");
    std::os::unix::fs::symlink(&outside, link_dir.join("link.wav")).unwrap();
    let (status, v) = envelope_code(get_file(&s, "filename=ai_call/link.wav").await).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["code"], 405, "{v}");
}

#[tokio::test]
async fn a_blank_or_missing_filename_is_405() {
    let s = TestServer::start().await;
    for query in ["", "filename=", "filename=%20%20", "name=x.wav"] {
        let (status, v) = envelope_code(get_file(&s, query).await).await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
        assert_eq!(v["code"], 405, "{query}: {v}");
    }
}
