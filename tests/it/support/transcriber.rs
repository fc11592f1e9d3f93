//! A real recogniser for the tests: `transcriber.py` (pocketsphinx with its US English
//! model, behind the OpenAI-compatible transcription protocol) run from the tests' Python
//! environment, which scripts/setup makes (`CALLCENTER_VENV`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::venv;

pub struct Transcriber {
    child: Child,
    /// The base URL for `asr.url`.
    pub url: String,
}

impl Transcriber {
    /// A recogniser of one of `phrases` (see transcriber.py for why).
    pub fn start(phrases: &[&str]) -> Transcriber {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/transcriber.py");
        let mut child = Command::new(venv().join("bin/python"))
            .arg(script)
            .args(phrases)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the tests' Python environment is there: run scripts/setup");
        // Its first line, once the model is loaded: `listening on HOST:PORT`.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the transcriber did not start (pocketsphinx missing? run scripts/setup): {line:?}")
        });
        Transcriber { url: format!("http://{addr}/v1"), child }
    }
}

impl Drop for Transcriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
