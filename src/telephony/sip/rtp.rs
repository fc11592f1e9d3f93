//! RTP (RFC 3550) for one G.711 call: 20 ms frames sent in real time, frames received and
//! decoded, both directions laid on the recording's timeline.
//!
//! Written by hand: a G.711 stream needs the 12-byte header and a paced sender, and the
//! RTP crates (webrtc-rs `rtp`, `rtp-rs`) give the header only, which is the easy part.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::g711::Codec;
use super::pacer::{Frame, Paced};
use super::recorder::Recorder;
use super::sdp::RemoteMedia;
use super::srtp::Srtp;
use crate::domain::HangupCause;
use crate::telephony::dtmf;
use crate::telephony::tts::{Audio, Speech, TtsError};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
pub const FRAME_TIME: Duration = Duration::from_millis(20);
/// How far ahead of its slot the sender makes a frame at most, and how far at least: it
/// wakes when the frames queued run down to `REFILL` and makes them up to `PREPARED`, two
/// frames a wake-up. The runtime may be that late waking it before a frame is late.
const PREPARED: Duration = Duration::from_millis(80);
const REFILL: Duration = Duration::from_millis(40);
/// Received frames kept while nobody listens (1 s, 16 kB); newer ones are dropped. What
/// waits is only ever used to go on with a turn that cut a line short, at once; the rest
/// is dropped when the next line or turn starts.
const HEARD_BACKLOG: usize = 50;
/// Key presses kept for `listen`; a peer flooding events cannot grow it further.
pub const KEY_BACKLOG: usize = 32;

/// The fixed part of an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl Header {
    pub fn write(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + payload.len());
        out.push(0x80); // version 2, no padding, no extension, no CSRC
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The header and the payload of a packet, or `None` if it is no RTP version 2.
    pub fn parse(packet: &[u8]) -> Option<(Header, &[u8])> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return None;
        }
        let csrcs = usize::from(packet[0] & 0x0F);
        let mut start = 12 + 4 * csrcs;
        if packet[0] & 0x10 != 0 {
            // Header extension: 4 bytes, then its length in 32-bit words.
            let ext = packet.get(start..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*packet.last()?))?;
        }
        let payload = packet.get(start..end)?;
        let header = Header {
            payload_type: packet[1] & 0x7F,
            marker: packet[1] & 0x80 != 0,
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        };
        Some((header, payload))
    }
}

/// An RFC 4733 telephone-event payload (§2.3): the event, its end bit, volume and the
/// duration so far. One key press is many packets with the same RTP timestamp, the last
/// (end) one sent three times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let &[event, flags, d0, d1, ..] = payload else { return None };
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn write(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3F), d0, d1]
    }
}

/// Turns a stream of telephone-event packets into key presses, each once: at the first
/// end packet of an event (its start is the RTP timestamp), whatever the repeats.
#[derive(Debug, Default)]
pub struct KeyPresses {
    /// (ssrc, timestamp) of the event reported last.
    last: Option<(u32, u32)>,
}

impl KeyPresses {
    pub fn on_packet(&mut self, header: &Header, event: &TelephoneEvent) -> Option<char> {
        let id = (header.ssrc, header.timestamp);
        if !event.end || self.last == Some(id) {
            return None;
        }
        self.last = Some(id);
        dtmf::key_of_event(event.event)
    }
}

/// Hands out local RTP ports from the configured range, round robin, even numbers only
/// (RTCP's odd neighbour stays free for it). `min = 0` takes any free port.
pub struct PortRange {
    min: u16,
    max: u16,
    next: AtomicU16,
}

impl PortRange {
    pub fn new(min: u16, max: u16) -> PortRange {
        let min = if min == 0 { 0 } else { min.saturating_add(min % 2) };
        PortRange { min, max: max.max(min), next: AtomicU16::new(min) }
    }

    /// Binds a socket on `ip` at the next free port of the range.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        if self.min == 0 {
            return UdpSocket::bind(SocketAddr::new(ip, 0)).await;
        }
        let slots = (self.max - self.min) / 2 + 1;
        let mut last_error = None;
        for _ in 0..slots {
            let offset = self.next.fetch_add(2, Ordering::Relaxed).wrapping_sub(self.min) % (slots * 2);
            let port = self.min + offset;
            match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(socket) => return Ok(socket),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("empty RTP port range")))
    }
}

/// Audio the agent is to say, as it comes, and who to tell when its first frame and its
/// last have gone out.
struct Prompt {
    /// The audio still to come; `None` once it has all come (or failed part way).
    speech: Option<Speech>,
    /// Audio come and not sent yet: chunks as they came (shared, not copied), and how far
    /// into the first one the sending is.
    ahead: VecDeque<Audio>,
    sent_of_first: usize,
    started: Option<oneshot::Sender<std::time::Instant>>,
    done: oneshot::Sender<()>,
    progress: Arc<Progress>,
}

impl Prompt {
    /// Samples come and not sent yet.
    fn waiting(&self) -> usize {
        self.progress.received.load(Ordering::Relaxed) - self.progress.sent.load(Ordering::Relaxed)
    }

    /// Fills `frame` from the front of what has come; how many samples it took.
    fn fill(&mut self, frame: &mut [i16]) -> usize {
        let mut filled = 0;
        while filled < frame.len()
            && let Some(chunk) = self.ahead.front()
        {
            let n = (chunk.len() - self.sent_of_first).min(frame.len() - filled);
            frame[filled..filled + n].copy_from_slice(&chunk[self.sent_of_first..self.sent_of_first + n]);
            filled += n;
            self.sent_of_first += n;
            if self.sent_of_first == chunk.len() {
                self.ahead.pop_front();
                self.sent_of_first = 0;
            }
        }
        filled
    }

    /// Takes what the speech gave: audio, its end, or a failure (which ends it too).
    fn take(&mut self, item: Option<Result<Audio, TtsError>>) {
        match item {
            Some(Ok(pcm)) => {
                self.progress.received.fetch_add(pcm.len(), Ordering::Relaxed);
                self.ahead.push_back(pcm);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "sip: text to speech failed part way through a line; it ends there");
                self.speech = None;
            }
            None => self.speech = None,
        }
    }
}

/// A prompt on its way out: when its first audio frame was sent, whether all of it was,
/// and how far it has got. Dropping `done` cuts the prompt short: what is queued of it
/// is taken back.
pub struct Playing {
    pub started: oneshot::Receiver<std::time::Instant>,
    pub done: oneshot::Receiver<()>,
    pub progress: Arc<Progress>,
}

/// How much of a prompt's audio has come (samples), and how much of that has gone out.
#[derive(Debug, Default)]
pub struct Progress {
    received: AtomicUsize,
    sent: AtomicUsize,
}

impl Progress {
    /// The share of the audio come so far that has gone out (of the whole line once it
    /// has all come); 0 before any audio.
    pub fn share(&self) -> f64 {
        let received = self.received.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        if received == 0 { 0.0 } else { (sent as f64 / received as f64).min(1.0) }
    }
}

/// The media of one answered call: a sender pacing 20 ms frames (silence between prompts,
/// so the stream and any NAT binding stay up), a receiver decoding what comes in, and the
/// recording of both.
pub struct Media {
    prompts: mpsc::UnboundedSender<Prompt>,
    /// The callee's audio, a frame at a time as it arrived.
    pub heard: mpsc::Receiver<Vec<i16>>,
    /// Keys the callee pressed (RFC 4733), on the channel SIP INFO key presses also feed.
    pub keys: mpsc::Receiver<char>,
    recorder: Arc<Mutex<Recorder>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Ends a call whose far end has sent no RTP for `after`: its media path is gone (a
/// crashed phone, a NAT binding lost) though no BYE came.
pub struct RtpTimeout {
    pub after: Duration,
    /// Set to `MEDIA_TIMEOUT` unless the call has ended already.
    pub ended: watch::Sender<Option<HangupCause>>,
}

/// What is done to each packet at the socket, both ways.
#[derive(Default)]
pub struct PacketPath {
    /// Symmetric RTP: send to where the far end's RTP comes from (behind NAT, the address
    /// in its SDP may not be the one that reaches it).
    pub symmetric: bool,
    /// SRTP: each packet protected as it goes out (by the pacer: in the order of the
    /// wire, never one taken back), and checked and decrypted right after it is received
    /// (one that fails is dropped).
    pub srtp: Option<Srtp>,
}

impl PacketPath {
    /// An RTP packet as it goes on the wire.
    pub fn outgoing(&self, packet: Vec<u8>) -> Option<Vec<u8>> {
        match &self.srtp {
            Some(srtp) => srtp.protect(&packet),
            None => Some(packet),
        }
    }

    /// A packet from the wire as RTP; `None` when SRTP refuses it.
    pub fn incoming<'a>(&self, packet: &'a [u8]) -> Option<std::borrow::Cow<'a, [u8]>> {
        match &self.srtp {
            Some(srtp) => srtp.unprotect(packet).map(std::borrow::Cow::Owned),
            None => Some(std::borrow::Cow::Borrowed(packet)),
        }
    }
}

impl Media {
    /// Starts sending (to `remote`, or with symmetric RTP where the far end's comes from)
    /// and receiving at once; the recording's time zero is now. Key presses go to `keys`,
    /// the channel whose receiving end is `keys_rx` (SIP INFO feeds it too). With
    /// `timeout`, a far end that sends nothing for that long ends the call.
    pub fn start(
        socket: UdpSocket,
        remote: Arc<Mutex<Option<RemoteMedia>>>,
        recorder: Recorder,
        (keys, keys_rx): (mpsc::Sender<char>, mpsc::Receiver<char>),
        timeout: Option<RtpTimeout>,
        path: PacketPath,
    ) -> std::io::Result<Media> {
        // The pacer sends from a handle of its own on the same socket.
        let socket = socket.into_std()?;
        let sending = socket.try_clone()?;
        let socket = UdpSocket::from_std(socket)?;
        let path = Arc::new(path);
        let recorder = Arc::new(Mutex::new(recorder));
        let cancel = CancellationToken::new();
        let (prompts_tx, prompts_rx) = mpsc::unbounded_channel();
        let (heard_tx, heard_rx) = mpsc::channel(HEARD_BACKLOG);
        let start = Instant::now();
        let paced = Paced::new(sending, start.into_std(), path.clone());
        let sender =
            tokio::spawn(send_loop(paced, remote.clone(), recorder.clone(), prompts_rx, cancel.clone()));
        let receiver = tokio::spawn(receive_loop(
            (socket, path),
            remote,
            recorder.clone(),
            (heard_tx, keys),
            timeout,
            start,
            cancel.clone(),
        ));
        Ok(Media {
            prompts: prompts_tx,
            heard: heard_rx,
            keys: keys_rx,
            recorder,
            cancel,
            tasks: vec![sender, receiver],
        })
    }

    /// Queues `speech` (8 kHz) to be said, each frame as soon as it has come.
    pub fn play(&self, speech: Speech) -> Playing {
        let (started, started_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        let progress = Arc::new(Progress::default());
        let prompt = Prompt {
            speech: Some(speech),
            ahead: VecDeque::new(),
            sent_of_first: 0,
            started: Some(started),
            done,
            progress: progress.clone(),
        };
        let _ = self.prompts.send(prompt);
        Playing { started: started_rx, done: done_rx, progress }
    }

    /// Stops both directions and gives back the recording.
    pub async fn stop(mut self) -> Recorder {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        std::mem::replace(&mut *self.recorder.lock().expect("recorder lock"), Recorder::new(None, 0))
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Where a call's sender is on its stream: the next slot to make, its sequence number, and
/// the slot of the stream's first packet (it carries the marker).
struct Cursor {
    n: u64,
    seq: u16,
    first_slot: Option<u64>,
}

impl Cursor {
    /// Takes back the frames queued for slot `from` on: the next frame made goes in the
    /// first of their slots. Their slots and how many there were.
    fn take_back(&mut self, paced: &Paced, from: u64) -> Option<(u64, usize)> {
        let (back, count) = paced.take_back(from)?;
        self.n = back;
        self.seq = self.seq.wrapping_sub(count as u16);
        self.first_slot = self.first_slot.filter(|&first| first < back);
        Some((back, count))
    }
}

/// Makes one frame for every 20 ms slot of a fixed grid from `start` and queues it on the
/// pacer, which sends it on its slot: a prompt's audio while there is one, silence
/// otherwise. Frames are made between `REFILL` and `PREPARED` ahead of their slots, so this
/// task may be late by up to `REFILL` without a frame being late. Queued frames are taken
/// back where that is heard: a prompt that comes while silence is queued starts in the
/// first slot not sent yet, and a prompt cut short (the caller dropped its `done`: the
/// callee spoke over it) stops there too. Frame `n` carries timestamp `n·160` from a
/// random base, so a stall shows the receiver a gap rather than a squeezed stream. A
/// prompt's audio is taken as it comes; a frame whose audio has not come when it is made
/// is silence, and the prompt goes on when it comes.
async fn send_loop(
    paced: Paced,
    remote: Arc<Mutex<Option<RemoteMedia>>>,
    recorder: Arc<Mutex<Recorder>>,
    mut prompts: mpsc::UnboundedReceiver<Prompt>,
    cancel: CancellationToken,
) {
    let ssrc: u32 = rand::random();
    let base_ts: u32 = rand::random();
    let mut at = Cursor { n: 0, seq: rand::random(), first_slot: None };
    let mut current: Option<Prompt> = None;
    // The first slot of the current prompt's frames, and the first of the silent frames
    // queued since the last prompt: what a cut or a new prompt takes back.
    let mut line_from: Option<u64> = None;
    let mut silent_since: Option<u64> = None;
    loop {
        let due = Instant::from_std(paced.due(at.n));
        if due > Instant::now() + PREPARED {
            // Far enough ahead: wait until the queue runs down to `REFILL`, taking the
            // prompt's audio as it comes, a new prompt, or the current one cut short.
            enum Woken {
                Refill,
                Audio(Option<Result<Audio, TtsError>>),
                Cut,
                Prompt(Prompt),
            }
            let idle = current.is_none();
            let current_line = async {
                match current.as_mut() {
                    Some(Prompt { speech: Some(speech), done, .. }) => tokio::select! {
                        item = speech.next() => Woken::Audio(item),
                        _ = done.closed() => Woken::Cut,
                    },
                    Some(prompt) => {
                        prompt.done.closed().await;
                        Woken::Cut
                    }
                    None => std::future::pending().await,
                }
            };
            let woken = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due - REFILL) => Woken::Refill,
                woken = current_line => woken,
                Some(prompt) = prompts.recv(), if idle => Woken::Prompt(prompt),
            };
            match woken {
                Woken::Refill | Woken::Cut => {}
                Woken::Audio(item) => {
                    current.as_mut().expect("audio comes for a prompt").take(item);
                    continue;
                }
                Woken::Prompt(prompt) => {
                    current = Some(prompt);
                    if let Some(from) = silent_since.take() {
                        at.take_back(&paced, from);
                    }
                    continue;
                }
            }
        }
        if current.as_ref().is_some_and(|p| p.done.is_closed()) {
            current = None;
            // What was queued of it does not go out, nor stays on the recording.
            if let Some((back, count)) = line_from.take().and_then(|from| at.take_back(&paced, from)) {
                recorder.lock().expect("recorder lock").agent(back as usize * FRAME, &vec![0; count * FRAME]);
            }
            continue;
        }
        // Far behind (a stalled machine): skip the frames that are too late to matter.
        let behind = Instant::now().saturating_duration_since(due);
        if behind > FRAME_TIME * 10 {
            let skipped = (behind.as_millis() / FRAME_TIME.as_millis()) as u64;
            crate::metrics::rtp_frames_skipped(skipped);
            at.n += skipped;
        }
        if current.is_none() {
            current = prompts.try_recv().ok();
        }
        let n = at.n;
        let mut frame = [0i16; FRAME];
        let (mut started, mut done, mut speaking) = (None, None, false);
        if let Some(prompt) = &mut current {
            // What a prompt just taken up already has (a line made whole) goes out now.
            while let Some(item) = prompt.speech.as_mut().and_then(|s| s.next().now_or_never()) {
                prompt.take(item);
            }
            // A whole frame, or the last of the line.
            if prompt.speech.is_none() || prompt.waiting() >= FRAME {
                let took = prompt.fill(&mut frame);
                if took > 0 {
                    started = prompt.started.take();
                    prompt.progress.sent.fetch_add(took, Ordering::Relaxed);
                    recorder.lock().expect("recorder lock").agent(n as usize * FRAME, &frame);
                    speaking = true;
                }
            }
            if prompt.speech.is_none() && prompt.ahead.is_empty() {
                done = current.take().map(|prompt| prompt.done);
            }
        }
        let remote = remote.lock().expect("remote lock").as_ref().map(|r| (r.addr, r.codec));
        match remote {
            Some((to, codec)) => {
                let header = Header {
                    payload_type: codec.payload_type(),
                    marker: *at.first_slot.get_or_insert(n) == n,
                    seq: at.seq,
                    timestamp: base_ts.wrapping_add((n as u32).wrapping_mul(FRAME as u32)),
                    ssrc,
                };
                at.seq = at.seq.wrapping_add(1);
                line_from = if current.is_some() { line_from.or(Some(n)) } else { None };
                let silent = current.is_none() && !speaking && done.is_none();
                silent_since = if silent { silent_since.or(Some(n)) } else { None };
                let packet = header.write(&codec.encode(&frame));
                paced.push(Frame { n, packet, to, started, done });
            }
            // Nowhere to send yet: the line is over for whoever waits on it all the same.
            None => {
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
        at.n += 1;
    }
}

/// Decodes every G.711 packet that arrives, places it on the recording by its RTP
/// timestamp (anchored at the arrival of the stream's first packet, re-anchored when the
/// stream jumps), and hands it to `listen`. Telephone-events of the payload type the
/// answer gave become key presses; comfort noise is skipped.
async fn receive_loop(
    // The socket, and what is done to each packet that comes on it.
    (socket, path): (UdpSocket, Arc<PacketPath>),
    remote: Arc<Mutex<Option<RemoteMedia>>>,
    recorder: Arc<Mutex<Recorder>>,
    (heard, keys): (mpsc::Sender<Vec<i16>>, mpsc::Sender<char>),
    mut timeout: Option<RtpTimeout>,
    start: Instant,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; 2048];
    let mut presses = KeyPresses::default();
    let mut latch = Latch::default();
    // (ssrc, timestamp, position in samples) of the anchor packet.
    let mut anchor: Option<(u32, u32, i64)> = None;
    let mut last_packet = start;
    loop {
        let silent_until = timeout.as_ref().map(|t| last_packet + t.after);
        let received = tokio::select! {
            _ = cancel.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
            _ = tokio::time::sleep_until(silent_until.unwrap_or(start)), if silent_until.is_some() => {
                if let Some(t) = timeout.take() {
                    tracing::warn!(after = ?t.after, "rtp: the far end has sent no media: ending the call");
                    t.ended.send_if_modified(|e| e.is_none() && e.replace(HangupCause::media_timeout()).is_none());
                }
                continue;
            }
        };
        let (len, from) = match received {
            Ok(received) => received,
            Err(e) => {
                // ICMP port unreachable shows here on some systems; keep listening.
                tracing::trace!(error = %e, "rtp: receive failed");
                continue;
            }
        };
        let Some(packet) = path.incoming(&buf[..len]) else { continue };
        let Some((header, payload)) = Header::parse(&packet) else { continue };
        last_packet = Instant::now();
        if path.symmetric {
            match latch.admit(from) {
                Admitted::FarEnd => {}
                Admitted::Moved => send_to(&remote, from),
                Admitted::Stranger => continue,
            }
        }
        let telephone_event = remote.lock().expect("remote lock").as_ref().and_then(|r| r.telephone_event);
        if telephone_event == Some(header.payload_type) {
            let key = TelephoneEvent::parse(payload).and_then(|e| presses.on_packet(&header, &e));
            if let Some(key) = key {
                tracing::debug!(key = %key, "rtp: key pressed");
                // A full backlog: nobody has listened for 32 keys, the oldest are enough.
                let _ = keys.try_send(key);
            }
            continue;
        }
        let Some(codec) = Codec::from_payload_type(header.payload_type) else { continue };
        let pcm = codec.decode(payload);
        let arrival = (start.elapsed().as_secs_f64() * 8000.0) as i64 - pcm.len() as i64;
        let position = match anchor {
            Some((ssrc, ts, pos)) if ssrc == header.ssrc => {
                let p = pos + i64::from(header.timestamp.wrapping_sub(ts) as i32);
                // More than a second off the clock: the sender restarted its timeline.
                if (p - arrival).abs() > 8000 { None } else { Some(p) }
            }
            _ => None,
        };
        let position = position.unwrap_or_else(|| {
            anchor = Some((header.ssrc, header.timestamp, arrival.max(0)));
            arrival.max(0)
        });
        recorder.lock().expect("recorder lock").callee(position.max(0) as usize, &pcm);
        // Nobody listening for a while: the oldest audio is of no use, drop this frame.
        let _ = heard.try_send(pcm);
    }
}

/// Packets in a row from a new source that make it the far end's (it moved: a NAT
/// rebinding, a media server handing over): 200 ms of a stream.
const RELATCH_AFTER: u32 = 10;

/// Symmetric RTP kept to one source: the far end's first source is where our RTP goes,
/// and another takes its place only after `RELATCH_AFTER` packets in a row with none from
/// the first between them. Packets from anywhere else are dropped, so a stranger can
/// neither redirect our media nor be heard while the far end still sends.
#[derive(Default)]
struct Latch {
    source: Option<SocketAddr>,
    candidate: Option<(SocketAddr, u32)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Admitted {
    FarEnd,
    /// The far end's, from a new source: ours goes there from now on.
    Moved,
    Stranger,
}

impl Latch {
    fn admit(&mut self, from: SocketAddr) -> Admitted {
        if self.source == Some(from) {
            self.candidate = None;
            return Admitted::FarEnd;
        }
        let run = match self.candidate {
            Some((candidate, run)) if candidate == from => run + 1,
            _ => 1,
        };
        if self.source.is_none() || run >= RELATCH_AFTER {
            self.source = Some(from);
            self.candidate = None;
            return Admitted::Moved;
        }
        self.candidate = Some((from, run));
        Admitted::Stranger
    }
}

/// Our RTP goes to `to` from now on (where the far end's comes from).
fn send_to(remote: &Mutex<Option<RemoteMedia>>, to: SocketAddr) {
    let mut remote = remote.lock().expect("remote lock");
    if let Some(remote) = remote.as_mut().filter(|r| r.addr != to) {
        tracing::debug!(from = %remote.addr, to = %to, "rtp: sending to where the far end's RTP comes from");
        remote.addr = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::tts;

    #[test]
    fn a_header_written_parses_back() {
        let h = Header { payload_type: 8, marker: true, seq: 65535, timestamp: 0xDEADBEEF, ssrc: 7 };
        let packet = h.write(&[1, 2, 3]);
        assert_eq!(packet.len(), 15);
        assert_eq!(Header::parse(&packet), Some((h, &[1u8, 2, 3][..])));
    }

    #[test]
    fn csrcs_extensions_and_padding_are_skipped() {
        let mut packet = vec![0x80 | 0x20 | 0x10 | 0x01, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        packet.extend_from_slice(&[0, 0, 0, 5]); // one CSRC
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension of one word
        packet.extend_from_slice(&[10, 20, 30]); // payload
        packet.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let (h, payload) = Header::parse(&packet).unwrap();
        assert_eq!((h.payload_type, h.seq, h.timestamp, h.ssrc), (0, 1, 160, 9));
        assert_eq!(payload, &[10, 20, 30]);
    }

    #[test]
    fn garbage_is_not_rtp() {
        assert_eq!(Header::parse(&[0x80, 0, 0]), None);
        assert_eq!(Header::parse(&[0x40; 20]), None);
        let mut bad_padding =
            Header { payload_type: 0, marker: false, seq: 0, timestamp: 0, ssrc: 0 }.write(&[]);
        bad_padding[0] |= 0x20;
        bad_padding.push(200);
        assert_eq!(Header::parse(&bad_padding), None);
    }

    #[tokio::test]
    async fn ports_come_from_the_range_and_skip_taken_ones() {
        let range = PortRange::new(0, 0);
        let any = range.bind("127.0.0.1".parse().unwrap()).await.unwrap();
        assert_ne!(any.local_addr().unwrap().port(), 0);

        // A range of two even ports, the first taken: the second is given, then none.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let Ok(taken) = std::net::UdpSocket::bind(("127.0.0.1", base)) else { return };
        let range = PortRange::new(base, base + 2);
        let Ok(got) = range.bind("127.0.0.1".parse().unwrap()).await else { return };
        assert_eq!(got.local_addr().unwrap().port(), base + 2);
        drop(taken);
    }

    #[tokio::test]
    async fn prompts_go_out_paced_and_received_audio_comes_back_in_order() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut media, our_addr) =
            media_to(peer.local_addr().unwrap(), None, PacketPath::default(), &dir).await;

        // Silence goes out while there is nothing to say.
        let mut buf = [0u8; 512];
        let mut previous = None;
        for _ in 0..3 {
            let (len, _) = peer.recv_from(&mut buf).await.unwrap();
            let (h, payload) = Header::parse(&buf[..len]).unwrap();
            assert!(Codec::Pcmu.decode(payload).iter().all(|&s| s == 0));
            previous = Some(h);
        }

        // 100 ms of audio: five frames, paced (the last goes out four frame times after the
        // first, give or take the pacer's margin), not sent at once.
        let t = Instant::now();
        media.play(tts::whole(vec![1000; 800])).done.await.unwrap();
        let took = t.elapsed();
        assert!(
            took >= FRAME_TIME * 4 - Duration::from_millis(1) && took < Duration::from_millis(400),
            "{took:?}"
        );

        let mut loud = 0;
        for _ in 0..8 {
            let (len, _) = peer.recv_from(&mut buf).await.unwrap();
            let (h, payload) = Header::parse(&buf[..len]).unwrap();
            assert_eq!((h.payload_type, payload.len()), (0, FRAME));
            loud += usize::from(Codec::Pcmu.decode(payload)[0] > 900);
            // One stream: the silence queued and taken back for the prompt left no gap and
            // no repeat.
            let p: Header = previous.expect("a packet before");
            assert_eq!((h.seq, h.timestamp), (p.seq.wrapping_add(1), p.timestamp.wrapping_add(160)));
            assert!(!h.marker);
            previous = Some(h);
        }
        assert_eq!(loud, 5);

        for i in 0..3u32 {
            let h = Header { payload_type: 8, marker: false, seq: i as u16, timestamp: i * 160, ssrc: 1 };
            peer.send_to(&h.write(&Codec::Pcma.encode(&[2000; FRAME])), our_addr).await.unwrap();
        }
        for _ in 0..3 {
            let frame =
                tokio::time::timeout(Duration::from_secs(2), media.heard.recv()).await.unwrap().unwrap();
            assert!(frame.iter().all(|&s| (s - 2000).abs() < 100));
        }
        let (agent, callee) = recorded(media, &dir).await;
        assert_eq!(agent.iter().filter(|&&s| s > 900).count(), 800);
        assert_eq!(callee.iter().filter(|&&s| s > 1900).count(), 480);
    }

    #[tokio::test]
    async fn a_prompt_plays_as_its_audio_comes_with_silence_while_it_is_awaited() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (media, _) = media_to(peer.local_addr().unwrap(), None, PacketPath::default(), &dir).await;
        let loud = async |frames: usize| {
            let (mut buf, mut loud) = ([0u8; 512], 0);
            while loud < frames {
                let (len, _) = peer.recv_from(&mut buf).await.unwrap();
                let (_, payload) = Header::parse(&buf[..len]).unwrap();
                loud += usize::from(Codec::Pcmu.decode(payload).iter().all(|&s| s > 900));
            }
        };

        // Three frames and a half come, then nothing until the test says.
        let (audio, coming) = futures::channel::mpsc::unbounded();
        audio.unbounded_send(Ok(Audio::from(vec![1000; 560]))).unwrap();
        let mut playing = media.play(coming.boxed());
        loud(3).await;
        playing.started.try_recv().expect("the first audio frame went out");
        assert!(playing.done.try_recv().is_err(), "the line is not over while its audio is awaited");
        assert_eq!(playing.progress.share(), 480.0 / 560.0, "the half frame waits for the rest");

        // The rest comes: the half frame is made whole, the last one goes out padded.
        audio.unbounded_send(Ok(Audio::from(vec![1000; 200]))).unwrap();
        drop(audio);
        playing.done.await.unwrap();
        assert_eq!(playing.progress.share(), 1.0);
        loud(1).await;
        let (agent, _) = recorded(media, &dir).await;
        assert_eq!(agent.iter().filter(|&&s| s > 900).count(), 760, "all of it, once");
    }

    #[tokio::test]
    async fn a_line_cut_short_stops_on_the_wire_and_on_the_recording_alike() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (media, _) = media_to(peer.local_addr().unwrap(), None, PacketPath::default(), &dir).await;
        let mut buf = [0u8; 512];
        let mut next_is_loud = async || {
            let (len, _) = peer.recv_from(&mut buf).await.unwrap();
            let (_, payload) = Header::parse(&buf[..len]).unwrap();
            Codec::Pcmu.decode(payload).iter().all(|&s| s > 900)
        };

        // Two seconds of a line; the callee speaks over it three frames in.
        let playing = media.play(tts::whole(vec![1000; 16_000]));
        let mut loud = 0;
        while loud < 3 {
            loud += usize::from(next_is_loud().await);
        }
        drop(playing.done);
        while next_is_loud().await {
            loud += 1;
        }
        assert!(loud < 100, "the line stopped");
        // Frames made ahead and taken back are not on the recording either.
        let (agent, _) = recorded(media, &dir).await;
        assert_eq!(agent.iter().filter(|&&s| s > 900).count(), loud * FRAME);
    }

    #[test]
    fn the_far_ends_source_is_kept_until_another_sends_a_run_of_its_own() {
        let (far, moved, stranger): (SocketAddr, SocketAddr, SocketAddr) = (
            "10.0.0.1:4000".parse().unwrap(),
            "10.0.0.1:4002".parse().unwrap(),
            "10.9.9.9:666".parse().unwrap(),
        );
        let mut latch = Latch::default();
        assert_eq!(latch.admit(far), Admitted::Moved, "the first source is the far end's");
        // A stranger between the far end's packets never gets a run.
        for _ in 0..50 {
            assert_eq!(latch.admit(stranger), Admitted::Stranger);
            assert_eq!(latch.admit(far), Admitted::FarEnd);
        }
        // The far end moves: its new source, alone for a run, takes over.
        for _ in 1..RELATCH_AFTER {
            assert_eq!(latch.admit(moved), Admitted::Stranger);
        }
        assert_eq!(latch.admit(moved), Admitted::Moved);
        assert_eq!(latch.admit(moved), Admitted::FarEnd);
        assert_eq!(latch.admit(far), Admitted::Stranger, "the old source is a stranger now");
    }

    #[tokio::test]
    async fn a_stranger_sending_rtp_to_the_call_is_neither_heard_nor_sent_to() {
        let far = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // The SDP names an address nobody sends from (a private one behind NAT).
        let named = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (media, our_addr) =
            media_to(named.local_addr().unwrap(), None, PacketPath { symmetric: true, srtp: None }, &dir)
                .await;

        // The far end talks (2000); a stranger's packets (-9000) come between its own.
        let packet = |i: u32, level: i16| {
            let h = Header { payload_type: 0, marker: false, seq: i as u16, timestamp: i * 160, ssrc: 7 };
            h.write(&Codec::Pcmu.encode(&[level; FRAME]))
        };
        for i in 0..25u32 {
            far.send_to(&packet(i, 2000), our_addr).await.unwrap();
            stranger.send_to(&packet(i, -9000), our_addr).await.unwrap();
            tokio::time::sleep(FRAME_TIME).await;
        }
        // Our RTP went to the far end's source, none to the stranger.
        let mut buf = [0u8; 512];
        tokio::time::timeout(Duration::from_secs(2), far.recv_from(&mut buf)).await.unwrap().unwrap();
        assert!(stranger.try_recv_from(&mut buf).is_err(), "nothing sent to the stranger");
        let (_, callee) = recorded(media, &dir).await;
        assert!(callee.iter().filter(|&&s| s > 1900).count() >= 20 * FRAME, "the far end is heard");
        assert!(callee.iter().all(|&s| s > -100), "the stranger is not");
    }

    /// A call's media on a socket of its own, sending G.711 μ-law to `to` (telephone-events
    /// of `telephone_event`) through `path`, recorded in `dir`; and its address.
    async fn media_to(
        to: SocketAddr,
        telephone_event: Option<u8>,
        path: PacketPath,
        dir: &tempfile::TempDir,
    ) -> (Media, SocketAddr) {
        let ours = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let our_addr = ours.local_addr().unwrap();
        let remote = RemoteMedia { addr: to, codec: Codec::Pcmu, telephone_event, crypto: None };
        let remote = Arc::new(Mutex::new(Some(remote)));
        let keys = mpsc::channel(KEY_BACKLOG);
        (Media::start(ours, remote, recorder(dir), keys, None, path).unwrap(), our_addr)
    }

    /// A recorder to a file in `dir`.
    fn recorder(dir: &tempfile::TempDir) -> Recorder {
        Recorder::new(Some(&dir.path().join("call.wav")), 8000 * 10)
    }

    /// What `media` recorded (see `recorder`): the agent's channel and the callee's.
    async fn recorded(media: Media, dir: &tempfile::TempDir) -> (Vec<i16>, Vec<i16>) {
        assert!(media.stop().await.finish(Duration::from_secs(5)).await.unwrap());
        let mut wav = hound::WavReader::open(dir.path().join("call.wav")).unwrap();
        let stereo: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        stereo.chunks(2).map(|s| (s[0], s[1])).unzip()
    }

    /// The packets of one key press as a phone sends them: updates every 50 ms, then
    /// the end packet three times, all with the event's start as their timestamp.
    fn press(event: u8, timestamp: u32, ssrc: u32, payload_type: u8) -> Vec<(Header, TelephoneEvent)> {
        let header = |seq: u16, marker| Header { payload_type, marker, seq, timestamp, ssrc };
        let mut packets: Vec<_> = (1..=3u16)
            .map(|i| {
                let e = TelephoneEvent { event, end: false, volume: 10, duration: 400 * i };
                (header(i, i == 1), e)
            })
            .collect();
        for i in 4..=6u16 {
            packets.push((header(i, false), TelephoneEvent { event, end: true, volume: 10, duration: 1280 }));
        }
        packets
    }

    #[test]
    fn a_telephone_event_written_parses_back_and_short_ones_are_none() {
        let e = TelephoneEvent { event: 11, end: true, volume: 63, duration: 1600 };
        assert_eq!(e.write(), [11, 0xBF, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&e.write()), Some(e));
        // The reserved bit is not the volume.
        assert_eq!(TelephoneEvent::parse(&[1, 0x4A, 0, 160]).map(|e| (e.end, e.volume)), Some((false, 10)));
        assert_eq!(TelephoneEvent::parse(&[1, 0x80, 0]), None);
    }

    #[test]
    fn each_key_press_is_reported_once_at_its_first_end_packet() {
        let mut presses = KeyPresses::default();
        let mut keys = String::new();
        // 1, 1 again (a new timestamp: a second press), #, then a flash (no key).
        for (event, ts) in [(1, 8000), (1, 9600), (11, 12000), (16, 16000)] {
            for (i, (header, e)) in press(event, ts, 7, 101).iter().enumerate() {
                let key = presses.on_packet(header, e);
                assert_eq!(key.is_some(), i == 3 && event != 16, "packet {i} of event {event}");
                keys.extend(key);
            }
        }
        assert_eq!(keys, "11#");
        // The same timestamp from another source is another press.
        let (header, e) = press(5, 16000, 8, 101)[3];
        assert_eq!(presses.on_packet(&header, &e), Some('5'));
    }

    #[tokio::test]
    async fn telephone_events_of_the_answers_payload_type_become_keys_and_are_no_audio() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut media, our_addr) =
            media_to(peer.local_addr().unwrap(), Some(96), PacketPath::default(), &dir).await;
        // Our own offer's 101 is not what the answer said: not a key.
        for (pt, event) in [(101, 3), (96, 7), (96, 10), (96, 9)] {
            for (header, e) in press(event, 160 * u32::from(event), 1, pt) {
                peer.send_to(&header.write(&e.write()), our_addr).await.unwrap();
            }
        }
        let mut keys = String::new();
        while keys.len() < 3 {
            let key = tokio::time::timeout(Duration::from_secs(2), media.keys.recv()).await.unwrap();
            keys.extend(key);
        }
        // Whatever the packets before the last press made has been handed on by now.
        assert_eq!(keys, "7*9", "each press once, in order");
        assert!(media.heard.try_recv().is_err(), "events are no audio");
        media.stop().await;
    }
}
