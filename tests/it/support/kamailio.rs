//! Kamailio (Debian's `kamailio`) as a carrier's registrar and proxy on loopback, with the
//! minimal configuration next to this file (kamailio.cfg): it runs in the foreground on a
//! free port, its log captured for the tests to read, and can be restarted on the same
//! port (losing its registrations, as a real one does).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

/// The password the server registers and calls with, as user `callcenter`.
pub const CC_PASSWORD: &str = "cc-s3cret";
/// The password of the callee's (baresip's) registration.
pub const CALLEE_PASSWORD: &str = "callee-s3cret";
/// The shortest registration it takes; less gets 423 with this Min-Expires.
pub const MIN_EXPIRES: u32 = 20;

pub struct Kamailio {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: TempDir,
    log: Arc<Mutex<String>>,
}

/// Kamailio must be installed (scripts/setup installs it): a test without its peer would
/// prove nothing, so its absence is a failure, not a skip.
pub fn require() {
    let found =
        Command::new("kamailio").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(found, "kamailio is not installed: run scripts/setup (apt-get install kamailio)");
}

impl Kamailio {
    /// Starts on a free loopback port (UDP and TCP).
    pub fn start() -> Kamailio {
        require();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(Mutex::new(String::new()));
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut kamailio = Kamailio { child: None, addr, dir, log };
        // A port picked free may be taken by the time kamailio binds it: try a few.
        for _ in 0..5 {
            kamailio.addr.set_port(free_port());
            if kamailio.run() {
                return kamailio;
            }
            kamailio.stop();
        }
        panic!("kamailio did not start:\n{}", kamailio.log());
    }

    /// Runs kamailio on `self.addr` until it answers OPTIONS; false if it does not start.
    fn run(&mut self) -> bool {
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/kamailio.cfg");
        let mut child = Command::new("kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(&config)
            .arg("-Y")
            .arg(self.dir.path())
            .arg("-P")
            .arg(self.dir.path().join("kamailio.pid"))
            .args(["-A", &format!("SIP_PORT={}", self.addr.port())])
            .args(["-A", &format!("CC_PASSWORD=\"{CC_PASSWORD}\"")])
            .args(["-A", &format!("CALLEE_PASSWORD=\"{CALLEE_PASSWORD}\"")])
            .args(["-A", &format!("MIN_EXPIRES={MIN_EXPIRES}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kamailio starts");
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&String::from_utf8_lossy(&line));
                    log.push('\n');
                }
            });
        }
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if answers_options(self.addr) {
                return true;
            }
            if self.child.as_mut().unwrap().try_wait().ok().flatten().is_some() {
                return false;
            }
        }
        false
    }

    /// Stops it (SIGTERM: the main process ends its children) and starts it again on the
    /// same port, with no registrations.
    pub fn restart(&mut self) {
        self.stop();
        self.log.lock().unwrap().push_str("--- restarted ---\n");
        assert!(self.run(), "kamailio did not restart:\n{}", self.log());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            if child.wait().is_err() {
                let _ = child.kill();
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log since the last restart.
    pub fn log_since_restart(&self) -> String {
        let log = self.log();
        log.rsplit("--- restarted ---").next().unwrap_or_default().to_string()
    }

    /// Waits (up to `limit`) until the log since the last restart contains `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.log_since_restart().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a SIP OPTIONS to `addr` gets an answer within a short while.
fn answers_options(addr: SocketAddr) -> bool {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let me = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag=p\r\nTo: <sip:{addr}>\r\nCall-ID: probe-{}@test\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        rand_suffix(),
        rand_suffix()
    );
    if socket.send_to(options.as_bytes(), addr).is_err() {
        std::thread::sleep(Duration::from_millis(200));
        return false;
    }
    let mut buf = [0u8; 2048];
    matches!(socket.recv_from(&mut buf), Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200"))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// A UDP port free on loopback whose TCP twin is free too.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
