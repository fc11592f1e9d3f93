//! Recordings written to disk as the call goes, so that memory does not grow with a call's
//! length and a crash loses at most the last moments.
//!
//! While the call lasts its WAV is `.<name>.part` beside its final name, its header's sizes
//! not yet set; the audio goes to its place in the file (by sample, so a chunk lost on the
//! way is a gap of silence, not a shift). At the hang-up the header is made final and the
//! file takes its name. After a crash, [`recover`] (run where the call is taken over) sets
//! the header from the file's length and names it, so the cut-short recording plays.
//!
//! All of it runs on one writer thread: the RTP loops hand it chunks and never wait for the
//! disk. The header is written by hand because hound writes only in order, and a recovered
//! file's header is rewritten in place.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tokio::sync::oneshot;

use super::SAMPLE_RATE;

/// A canonical WAV header: RIFF, `fmt ` (PCM, 16-bit), `data`.
const HEADER: u64 = 44;
/// Jobs waiting for the writer, across all calls (a few hundred ms of 1,000 calls' audio):
/// past it, a disk that cannot keep up loses audio rather than the calls their timing.
const QUEUE: usize = 8192;

/// A recording being written: `channels` interleaved, 8 kHz 16-bit.
pub struct StreamedWav {
    id: u64,
    channels: u16,
    /// Finished or given up: nothing to clean up when dropped.
    closed: bool,
}

enum Job {
    Open { id: u64, part: PathBuf, path: PathBuf, channels: u16 },
    Write { id: u64, at_byte: u64, bytes: Vec<u8> },
    Finish { id: u64, frames: u64, done: oneshot::Sender<io::Result<()>> },
    Abandon { id: u64 },
}

impl StreamedWav {
    /// Starts the recording at `path` (its directories made as needed). `None` when the
    /// writer is overwhelmed: the call goes on unrecorded.
    pub fn create(path: &Path, channels: u16) -> Option<StreamedWav> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let open = Job::Open { id, part: part_of(path), path: path.to_path_buf(), channels };
        match writer().try_send(open) {
            Ok(()) => Some(StreamedWav { id, channels, closed: false }),
            Err(_) => {
                tracing::warn!(path = %path.display(), "the recording writer is overwhelmed: this call is not recorded");
                None
            }
        }
    }

    /// Writes interleaved frames (one sample per channel) at frame `at` of the recording.
    pub fn write_at(&self, at: usize, interleaved: &[i16]) {
        let bytes = interleaved.iter().flat_map(|s| s.to_le_bytes()).collect();
        let at_byte = HEADER + at as u64 * u64::from(self.channels) * 2;
        if let Err(TrySendError::Full(_)) = writer().try_send(Job::Write { id: self.id, at_byte, bytes }) {
            crate::metrics::recording_audio_dropped();
        }
    }

    /// Ends the recording exactly `frames` long (cut, or filled with silence), makes its
    /// header final and gives it its name.
    pub async fn finish(mut self, frames: usize) -> io::Result<()> {
        self.closed = true;
        let (done, result) = oneshot::channel();
        let job = Job::Finish { id: self.id, frames: frames as u64, done };
        // The call is over: waiting for room in the queue is fine, off the runtime.
        let sent = tokio::task::spawn_blocking(move || writer().send(job)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return Err(io::Error::other("the recording writer has stopped"));
        }
        result.await.unwrap_or_else(|_| Err(io::Error::other("the recording writer has stopped")))
    }
}

impl Drop for StreamedWav {
    /// Dropped unfinished (the call's task panicked): the partial file is removed.
    fn drop(&mut self) {
        if !self.closed {
            let _ = writer().try_send(Job::Abandon { id: self.id });
        }
    }
}

/// After a crash: the recording at `path` that was being written when the server stopped,
/// given its name with a header that matches its length. Its length, or `None` if there
/// was none (a finished one is left as it is).
pub fn recover(path: &Path) -> io::Result<Option<Duration>> {
    let part = part_of(path);
    let file = match fs::OpenOptions::new().read(true).write(true).open(&part) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; HEADER as usize];
    file.read_exact_at(&mut header, 0)?;
    let channels = u64::from(u16::from_le_bytes([header[22], header[23]])).max(1);
    // Whole frames only: the last chunk may have been half written.
    let frames = file.metadata()?.len().saturating_sub(HEADER) / (channels * 2);
    close(&file, channels as u16, frames)?;
    fs::rename(&part, path)?;
    Ok(Some(Duration::from_secs_f64(frames as f64 / f64::from(SAMPLE_RATE))))
}

/// `.<name>.part` beside `path`.
fn part_of(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.part"))
}

fn header(channels: u16, frames: u64) -> [u8; HEADER as usize] {
    let block = channels * 2;
    let data = u32::try_from(frames * u64::from(block)).unwrap_or(u32::MAX - 36);
    let mut h = Vec::with_capacity(HEADER as usize);
    h.extend(b"RIFF");
    h.extend((36 + data).to_le_bytes());
    h.extend(b"WAVEfmt ");
    h.extend(16u32.to_le_bytes());
    h.extend(1u16.to_le_bytes()); // PCM
    h.extend(channels.to_le_bytes());
    h.extend(SAMPLE_RATE.to_le_bytes());
    h.extend((SAMPLE_RATE * u32::from(block)).to_le_bytes());
    h.extend(block.to_le_bytes());
    h.extend(16u16.to_le_bytes());
    h.extend(b"data");
    h.extend(data.to_le_bytes());
    h.try_into().expect("a 44-byte header")
}

/// Cuts or extends the file to `frames` and writes the final header.
fn close(file: &File, channels: u16, frames: u64) -> io::Result<()> {
    file.set_len(HEADER + frames * u64::from(channels) * 2)?;
    file.write_all_at(&header(channels, frames), 0)?;
    file.sync_data()
}

fn writer() -> &'static SyncSender<Job> {
    static WRITER: OnceLock<SyncSender<Job>> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("recording-writer".into())
            .spawn(move || write_jobs(rx))
            .expect("start the recording writer");
        tx
    })
}

/// An open recording on the writer thread, or why it failed (reported at its finish).
struct Open {
    file: io::Result<File>,
    part: PathBuf,
    path: PathBuf,
    channels: u16,
}

fn write_jobs(jobs: Receiver<Job>) {
    let mut open: HashMap<u64, Open> = HashMap::new();
    for job in jobs {
        match job {
            Job::Open { id, part, path, channels } => {
                let file = create(&part, channels);
                open.insert(id, Open { file, part, path, channels });
            }
            Job::Write { id, at_byte, bytes } => {
                if let Some(rec) = open.get_mut(&id)
                    && let Ok(file) = &rec.file
                    && let Err(e) = file.write_all_at(&bytes, at_byte)
                {
                    rec.file = Err(e);
                }
            }
            Job::Finish { id, frames, done } => {
                let Some(rec) = open.remove(&id) else { continue };
                let finished = rec
                    .file
                    .and_then(|file| close(&file, rec.channels, frames))
                    .and_then(|()| fs::rename(&rec.part, &rec.path));
                if finished.is_err() {
                    let _ = fs::remove_file(&rec.part);
                }
                let _ = done.send(finished);
            }
            Job::Abandon { id } => {
                if let Some(rec) = open.remove(&id) {
                    let _ = fs::remove_file(&rec.part);
                }
            }
        }
    }
}

fn create(part: &Path, channels: u16) -> io::Result<File> {
    if let Some(dir) = part.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = File::create(part)?;
    file.write_all_at(&header(channels, 0), 0)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut wav = hound::WavReader::open(path).unwrap();
        (wav.spec(), wav.samples::<i16>().map(Result::unwrap).collect())
    }

    #[tokio::test]
    async fn chunks_land_at_their_place_and_the_finished_file_has_its_name_and_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ai_call/2025/08/16/21/x.wav");
        let wav = StreamedWav::create(&path, 2).unwrap();
        wav.write_at(2, &[5, 6, 7, 8]); // frames 2 and 3
        wav.write_at(0, &[1, 2]); // a late chunk, before them
        wav.finish(6).await.unwrap();
        let (spec, got) = samples(&path);
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (2, 8000, 16));
        assert_eq!(got, [1, 2, 0, 0, 5, 6, 7, 8, 0, 0, 0, 0], "a gap is silence; the end is filled");
        let names: Vec<_> =
            fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["x.wav"], "no part file left");

        // Shorter than what was written: cut.
        let path = dir.path().join("y.wav");
        let wav = StreamedWav::create(&path, 2).unwrap();
        wav.write_at(0, &[1; 20]);
        wav.finish(3).await.unwrap();
        assert_eq!(samples(&path).1.len(), 6);
    }

    #[test]
    fn a_recording_cut_short_by_a_crash_is_recovered_playable_with_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.wav");
        // As a killed server leaves it: a header without sizes, and a half-written frame.
        let file = create(&part_of(&path), 2).unwrap();
        let audio: Vec<u8> = (0..16_000i16).flat_map(|s| s.to_le_bytes()).collect();
        file.write_all_at(&audio, HEADER).unwrap();
        file.write_all_at(&[9, 9, 9], HEADER + audio.len() as u64).unwrap();
        drop(file);
        assert_eq!(recover(&path).unwrap(), Some(Duration::from_secs(1)));
        let (spec, got) = samples(&path);
        assert_eq!(spec.channels, 2);
        assert_eq!(got.len(), 16_000);
        assert_eq!(got[15_999], 15_999);
        assert!(!part_of(&path).exists());
        assert_eq!(recover(&path).unwrap(), None, "nothing left to recover");
    }

    #[tokio::test]
    async fn a_recording_dropped_unfinished_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.wav");
        let wav = StreamedWav::create(&path, 2).unwrap();
        wav.write_at(0, &[1, 2]);
        drop(wav);
        // The writer works in order: once a later recording is finished, this one is gone.
        let other = dir.path().join("v.wav");
        StreamedWav::create(&other, 2).unwrap().finish(1).await.unwrap();
        assert!(!path.exists() && !part_of(&path).exists());
    }
}
