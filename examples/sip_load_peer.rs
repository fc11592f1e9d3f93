//! The callee of the SIP load benchmark (bench/sip_load.sh): the scripted test callee
//! (tests/it/support/sip_peer.rs) answering every call with `Script::Hold`, so that it
//! talks on each at real time and times the caller's RTP.
//!
//! `sip_load_peer [--talk SECS] [--voice quiet|silence]` prints `listening ADDR`, then
//! reads commands on standard input: `reset` starts the timing over, `report` prints it as
//! one line of JSON; it ends at the end of its input.

#[path = "../tests/it/support/sip_peer.rs"]
mod sip_peer;

use std::sync::Arc;
use std::time::Duration;

use callcenter::recording::synth_speech;
use callcenter::telephony::sip::g711::Codec;
use serde_json::json;
use sip_peer::{Script, SipPeer};
use tokio::io::{AsyncBufReadExt, BufReader};

fn main() {
    let mut talk = Duration::from_secs(600);
    let mut voice = "quiet".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} takes a value")));
        match arg.as_str() {
            "--talk" => talk = Duration::from_secs(value().parse().unwrap_or_else(|_| usage("--talk SECS"))),
            "--voice" => voice = value(),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let voice: Arc<[u8]> = match voice.as_str() {
        "silence" => Arc::from([]),
        "quiet" => Codec::Pcmu.encode(&murmur()).into(),
        other => usage(&format!("no voice {other}")),
    };
    tokio::runtime::Runtime::new().expect("a runtime").block_on(serve(talk, voice));
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\nusage: sip_load_peer [--talk SECS] [--voice quiet|silence]");
    std::process::exit(2)
}

/// Five seconds of a speech-like sound too quiet to be taken for speech (an RMS of 100
/// against the default VAD threshold of 400): the callee's line is not dead, and the agent
/// is not interrupted.
fn murmur() -> Vec<i16> {
    let loud = synth_speech(20, 5 * 8000, 180.0);
    let rms = (loud.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / loud.len() as f64).sqrt();
    loud.iter().map(|&s| (f64::from(s) * 100.0 / rms) as i16).collect()
}

async fn serve(talk: Duration, voice: Arc<[u8]>) {
    let peer = SipPeer::start(move |_| Script::Hold { talk, voice: voice.clone() }).await;
    println!("listening {}", peer.addr);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "reset" => peer.reset_timing(),
            "report" => {
                let t = peer.timing();
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let report = json!({
                    "calls": peer.calls_held(),
                    "packets": t.packets,
                    "gap_p50_ms": ms(t.gap_quantile(0.5)),
                    "gap_p99_ms": ms(t.gap_quantile(0.99)),
                    "gap_p999_ms": ms(t.gap_quantile(0.999)),
                    "gap_max_ms": ms(t.max_gap),
                    "gaps_over_25ms": t.gaps_over(Duration::from_millis(25)),
                    "gaps_over_40ms": t.gaps_over(Duration::from_millis(40)),
                    "missing": t.missing,
                    "reordered": t.reordered,
                });
                println!("{report}");
            }
            "" => {}
            other => eprintln!("unknown command {other}"),
        }
    }
}
