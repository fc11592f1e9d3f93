//! The process's log: text or JSON lines on stdout, written from a thread of their own,
//! and panics logged as error lines in the same format.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// Logs go to stdout from a thread of their own: a request's thread only queues its line,
/// and the writer sends what has queued in one write (under load, many lines; idle, each
/// line at once). A write per line had cost every request a system call.
///
/// Hold the guard to the end of main: dropping it writes out the lines still queued.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(16 * 1024) // the default 128k slots are 4 MB, taken at start
        .lossy(false) // a full queue makes the next line wait, as a slow stdout would
        .finish(stdout);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal()); // no colour codes in files and journals
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_span_list(false).init(),
    }
    log_panics();
    guard
}

/// Panics become error lines of the log (Rust's own hook writes free text to stderr,
/// which breaks a JSON log read by a collector): where, and the message.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%location, thread, "panicked: {message}");
    }));
}

/// What a panic said: its message, whether it was formatted or a literal.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_is_one_json_error_line_with_its_message_and_place() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().json().with_writer({
            let c = captured.clone();
            move || c.clone()
        });
        let previous = std::panic::take_hook();
        log_panics();
        let caught = tracing::subscriber::with_default(subscriber.finish(), || {
            std::panic::catch_unwind(|| panic!("a stored row was out of range"))
        });
        std::panic::set_hook(previous);
        assert!(caught.is_err());
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["level"], "ERROR");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["message"], "panicked: a stored row was out of range");
        assert!(fields["location"].as_str().unwrap().starts_with("src/logging.rs:"), "{fields}");
    }
}
