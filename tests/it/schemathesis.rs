//! Schemathesis (property-based testing from the OpenAPI document) against the real
//! server: thousands of generated requests, valid and not, with no 5xx, no answer outside
//! the envelope, and every answer as the document describes it. Needs schemathesis (fuzz/requirements.txt) in the virtual
//! environment that `scripts/setup` makes (`common::venv`).

use std::path::PathBuf;

use crate::common::{TestServer, venv};

fn schemathesis() -> PathBuf {
    let st = venv().join("bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/test, which installs fuzz/requirements.txt there",
        st.display()
    );
    st
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_envelope() {
    let st = schemathesis();
    let s = TestServer::start_with(|c| c.sim.time_scale = 0.0).await;
    // The recording the document's example names, so that the examples reach a 200 and a
    // 206 in audio/wav, not only refusals.
    let wav = s.settings.recordings.dir.join("ai_call/2025/08/16/21/2508162111590110001.wav");
    std::fs::create_dir_all(wav.parent().unwrap()).unwrap();
    write_wav(&wav);
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let out = tokio::process::Command::new(st)
        .arg("run")
        .arg(s.url("/api/openapi.json"))
        .args([
            "--checks",
            // The answers as the document describes them (status, media type, schema),
            // and every JSON answer the envelope.
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,enveloped",
            "--max-examples",
            "40",
            "--generation-deterministic",
        ])
        .args(["--request-timeout", "10"])
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &fuzz)
        .env("NO_COLOR", "1")
        .current_dir(s.dir.path())
        .output()
        .await
        .expect("schemathesis runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed") && !text.contains("failures"), "{text}");
}

/// Two seconds of 8 kHz 16-bit mono silence: longer than the example's range.
fn write_wav(path: &std::path::Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).unwrap();
    for _ in 0..16_000 {
        wav.write_sample(0i16).unwrap();
    }
    wav.finalize().unwrap();
}
