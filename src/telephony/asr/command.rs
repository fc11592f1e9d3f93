//! `asr.engine = "command"`: a program run per turn.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

use super::{Asr, AsrError};

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
    use super::*;

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
