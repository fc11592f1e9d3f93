//! baresip (Debian's `baresip`, 1.0) as the callee on loopback, or as a caller that dials
//! once it starts (`Setup::dial`): a temporary config with
//! one account per number (auto-answering, or ringing until cancelled), the callee's voice
//! played from a WAV (`aufile`), what it hears dumped to WAV files (`sndfile`), and its
//! log captured for the tests to read.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

pub struct Baresip {
    child: Child,
    /// Where it takes SIP (UDP and TCP).
    pub addr: SocketAddr,
    /// Where it takes SIP over TLS, with a certificate (`Setup::certificate`): the next port.
    pub tls_addr: SocketAddr,
    dir: TempDir,
    log: Arc<Mutex<String>>,
}

/// baresip must be installed (scripts/setup installs it): a SIP test without its peer
/// would prove nothing, so its absence is a failure, not a skip.
pub fn require() {
    let found =
        Command::new("baresip").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(found, "baresip is not installed: run scripts/setup (apt-get install baresip-core)");
}

impl Baresip {
    /// Starts baresip with an account for each `(number, auto_answer)`; the callee says
    /// `voice` (8 kHz mono) from the moment it answers.
    pub fn start(accounts: &[(&str, bool)], voice: &[i16]) -> Baresip {
        Self::start_with(accounts, voice, &Setup::default())
    }

    /// As `start`, with what `setup` adds.
    pub fn start_with(accounts: &[(&str, bool)], voice: &[i16], setup: &Setup) -> Baresip {
        let dir = tempfile::tempdir().expect("temp dir");
        let voice_path = dir.path().join("voice.wav");
        write_wav(&voice_path, voice);
        let mut last_log = String::new();
        // A port picked free may be taken by the time baresip binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config_dir = dir.path().join(".baresip");
            std::fs::create_dir_all(&config_dir).unwrap();
            std::fs::write(config_dir.join("config"), config(port, &voice_path, dir.path(), setup)).unwrap();
            let accounts: String = accounts
                .iter()
                .map(|(user, auto)| {
                    let mode = if *auto { "auto" } else { "manual" };
                    let (host, registration) = match &setup.registrar {
                        Some((at, password)) => (at.to_string(), format!("auth_pass={password};regint=20")),
                        None => ("127.0.0.1".to_string(), "regint=0".to_string()),
                    };
                    let media_encryption =
                        setup.media_encryption.map(|m| format!(";mediaenc={m}")).unwrap_or_default();
                    format!(
                        "<sip:{user}@{host}>;{registration};answermode={mode};audio_codecs=PCMA,PCMU{media_encryption}\n"
                    )
                })
                .collect();
            std::fs::write(config_dir.join("accounts"), accounts).unwrap();
            let dial = setup.dial.iter().flat_map(|uri| ["-e".to_string(), format!("/dial {uri}")]);
            let mut child = Command::new("baresip")
                .arg("-f")
                .arg(&config_dir)
                .args(dial)
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("baresip starts");
            let log = Arc::new(Mutex::new(String::new()));
            for pipe in [
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ] {
                let log = log.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                        let mut log = log.lock().unwrap();
                        log.push_str(&String::from_utf8_lossy(&line));
                        log.push('\n');
                    }
                });
            }
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if log.lock().unwrap().contains("baresip is ready") {
                    let tls_addr = SocketAddr::new(addr.ip(), port + 1);
                    return Baresip { child, addr, tls_addr, dir, log };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log = log.lock().unwrap().clone();
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("baresip did not start:\n{last_log}");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// What baresip decoded from us (its `sndfile` dumps), once the call has ended.
    pub fn heard(&self) -> Vec<i16> {
        let dumps: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        dumps
            .iter()
            .flat_map(|p| match hound::WavReader::open(p) {
                Ok(r) => r.into_samples::<i16>().map_while(Result::ok).collect::<Vec<_>>(),
                Err(_) => Vec::new(),
            })
            .collect()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a baresip may have besides its accounts.
#[derive(Default)]
pub struct Setup {
    /// Each account registers with this registrar (digest password), which relays its calls.
    pub registrar: Option<(SocketAddr, String)>,
    /// A PEM file with its certificate and key: it takes SIP over TLS (on the next port).
    pub certificate: Option<PathBuf>,
    /// Each account's media encryption (the srtp module): "srtp" (offered, not required)
    /// or "srtp-mand" (SRTP only).
    pub media_encryption: Option<&'static str>,
    /// Once started, it dials this SIP URI from its first account (baresip's `/dial`),
    /// saying its voice from the start of the call.
    pub dial: Option<String>,
}

fn config(port: u16, voice: &Path, dir: &Path, setup: &Setup) -> String {
    let mut extra = String::new();
    if let Some(certificate) = &setup.certificate {
        extra.push_str(&format!("sip_certificate {}\n", certificate.display()));
    }
    if setup.media_encryption.is_some() {
        extra.push_str("module srtp.so\n");
    }
    extra
        + &format!(
            "poll_method epoll\n\
         sip_listen 127.0.0.1:{port}\n\
         net_interface 127.0.0.1\n\
         call_local_timeout 120\n\
         call_max_calls 8\n\
         audio_player aubridge,nowhere\n\
         audio_alert aubridge,nowhere\n\
         audio_source aufile,{voice}\n\
         rtp_ports 30000-39999\n\
         module_path /usr/lib/baresip/modules\n\
         module g711.so\n\
         module aufile.so\n\
         module aubridge.so\n\
         module sndfile.so\n\
         snd_path {dir}\n\
         module_app account.so\n\
         module_app menu.so\n",
            voice = voice.display(),
            dir = dir.display(),
        )
}

/// A UDP port free on loopback whose TCP twin is free too (baresip listens on both).
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}
