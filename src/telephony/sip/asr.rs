//! Speech recognition for `listen`: the `Asr` trait, the placeholder used when none is
//! configured (`[语音 N秒]`), and a command-line recogniser (any program that reads a WAV
//! and prints the text: whisper.cpp, vosk, a script calling a cloud service).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

/// Turns one turn of the callee's speech into text. Implement it to plug in a real
/// recogniser; the SIP carrier takes any `Arc<dyn Asr>` (`SipCarrier::with_engines`).
#[async_trait]
pub trait Asr: Send + Sync + 'static {
    /// `pcm` is 8 kHz mono 16-bit, from the start of the turn to its last loud frame;
    /// `speech` is how long the callee spoke.
    async fn recognize(&self, pcm: &[i16], speech: Duration) -> Result<String, AsrError>;
}

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("`{program}` could not run: {detail}")]
    Failed { program: String, detail: String },
}

/// No recogniser: the text is the length of what was said, `[语音 3秒]`.
pub struct Placeholder;

#[async_trait]
impl Asr for Placeholder {
    async fn recognize(&self, _pcm: &[i16], speech: Duration) -> Result<String, AsrError> {
        Ok(placeholder(speech))
    }
}

/// `[语音 N秒]`, N rounded and at least 1.
pub fn placeholder(speech: Duration) -> String {
    format!("[语音 {}秒]", speech.as_secs_f64().round().max(1.0) as u64)
}

/// Runs `argv` with `{wav}` replaced by a temporary 8 kHz mono WAV of the turn; its
/// standard output, trimmed, is the text.
pub struct CommandAsr {
    pub argv: Vec<String>,
}

#[async_trait]
impl Asr for CommandAsr {
    async fn recognize(&self, pcm: &[i16], _speech: Duration) -> Result<String, AsrError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(AsrError::Failed {
                program: String::new(),
                detail: "sip.asr_command is empty".into(),
            });
        };
        let failed = |detail: String| AsrError::Failed { program: program.clone(), detail };
        let dir = std::env::temp_dir();
        let path = dir.join(format!("callcenter-asr-{}-{}.wav", std::process::id(), rand::random::<u64>()));
        let pcm = pcm.to_vec();
        let wav = path.clone();
        tokio::task::spawn_blocking(move || crate::recording::write_wav(&wav, &pcm))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        let wav_arg = path.display().to_string();
        let out = tokio::process::Command::new(program)
            .args(args.iter().map(|a| a.replace("{wav}", &wav_arg)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        let _ = std::fs::remove_file(&path);
        let out = out.map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_gives_the_rounded_length_in_seconds() {
        assert_eq!(placeholder(Duration::from_millis(2600)), "[语音 3秒]");
        assert_eq!(placeholder(Duration::from_millis(300)), "[语音 1秒]");
    }

    #[tokio::test]
    async fn a_command_recogniser_gets_a_wav_and_its_output_is_the_text() {
        // `sh -c` stands in for a recogniser: it checks the WAV exists and prints text.
        let asr = CommandAsr {
            argv: ["sh", "-c", "test -s \"$0\" && echo ' 好的，知道了 '", "{wav}"].map(String::from).to_vec(),
        };
        let text = asr.recognize(&[100; 8000], Duration::from_secs(1)).await.unwrap();
        assert_eq!(text, "好的，知道了");

        let broken = CommandAsr { argv: vec!["sh".into(), "-c".into(), "exit 3".into()] };
        assert!(broken.recognize(&[0; 160], Duration::from_millis(20)).await.is_err());
    }
}
