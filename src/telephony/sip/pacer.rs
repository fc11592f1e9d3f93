//! The one thread that puts every call's RTP frames on the wire, each on its slot of its
//! call's 20 ms grid.
//!
//! Each call's sender (an async task in `rtp`) prepares its packets a few frames ahead and
//! queues them here. Sending them from the async runtime instead, on a timer per call,
//! made them as late as the runtime was busy: at 1,000 calls its two threads check their
//! timers only between batches of other calls' work, and 6 % of the frames went out more
//! than 5 ms late. A thread of its own that does nothing but wait for the next slot and
//! send is woken by the kernel on time instead. Written by hand: no crate paces many UDP
//! streams on fixed grids.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::rtp::{FRAME_TIME, PacketPath};

/// A frame may go out this much before its slot: one wake-up then sends every frame due
/// within it, rather than one wake-up per frame.
const EARLY: Duration = Duration::from_micros(500);

/// One RTP packet for slot `n` of its stream, and whom to tell once it has gone out.
pub struct Frame {
    pub n: u64,
    pub packet: Vec<u8>,
    pub to: SocketAddr,
    /// Told the time it went out (the first frame of a line).
    pub started: Option<oneshot::Sender<Instant>>,
    /// Told once it has gone out (the last frame of a line).
    pub done: Option<oneshot::Sender<()>>,
}

/// One call's outgoing stream as the pacer holds it: its socket, its grid and the frames
/// queued on it.
struct Stream {
    socket: UdpSocket,
    path: Arc<PacketPath>,
    start: Instant,
    queue: Mutex<Queue>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The pacer found nothing to send and stopped looking: the next frame queued must
    /// bring the stream back to it.
    parked: bool,
}

impl Stream {
    /// When slot `n` is due.
    fn due(&self, n: u64) -> Instant {
        self.start + FRAME_TIME * n as u32
    }
}

/// A call's sending side of the pacer; dropping it stops the stream (what is queued is
/// dropped with it).
pub struct Paced(Arc<Stream>);

impl Paced {
    /// Paces frames out of `socket` (a handle of the call's socket: the call receives on
    /// another) through `path` (SRTP), slot `n` due at `start + n · 20 ms`.
    pub fn new(socket: UdpSocket, start: Instant, path: Arc<PacketPath>) -> Paced {
        let queue = Mutex::default();
        let stream = Arc::new(Stream { socket, path, start, queue, closed: AtomicBool::new(false) });
        pacer().send(stream.clone()).expect("the RTP pacing thread runs");
        Paced(stream)
    }

    /// When slot `n` is due.
    pub fn due(&self, n: u64) -> Instant {
        self.0.due(n)
    }

    /// Queues `frame`, after those queued already (slots in order; some may be skipped).
    pub fn push(&self, frame: Frame) {
        let mut queue = self.0.queue.lock().expect("pacer queue lock");
        queue.frames.push_back(frame);
        if std::mem::take(&mut queue.parked) {
            drop(queue);
            pacer().send(self.0.clone()).expect("the RTP pacing thread runs");
        }
    }

    /// Takes back the frames queued for slot `from` on and not sent yet (silence that a
    /// line about to start should take the place of): the first of their slots and how
    /// many there were.
    pub fn take_back(&self, from: u64) -> Option<(u64, usize)> {
        let mut queue = self.0.queue.lock().expect("pacer queue lock");
        let kept = queue.frames.iter().position(|f| f.n >= from)?;
        let first = queue.frames[kept].n;
        let count = queue.frames.len() - kept;
        queue.frames.truncate(kept);
        Some((first, count))
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Relaxed);
    }
}

/// The pacer's side: streams to (re)consider, sent by new streams and by pushes to a
/// parked one.
fn pacer() -> &'static mpsc::Sender<Arc<Stream>> {
    static PACER: OnceLock<mpsc::Sender<Arc<Stream>>> = OnceLock::new();
    PACER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("rtp-pacer".into())
            .spawn(move || run(rx))
            .expect("the RTP pacing thread starts");
        tx
    })
}

/// A stream waiting for its next slot, ordered by when that is.
struct Next {
    due: Instant,
    id: usize,
    stream: Arc<Stream>,
}

impl PartialEq for Next {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.id) == (other.due, other.id)
    }
}
impl Eq for Next {}
impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Next {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.id).cmp(&(other.due, other.id))
    }
}

/// Sleeps until the earliest stream's next frame is due (or a stream comes), sends every
/// frame due by then, and schedules each stream at its next queued frame; a stream with
/// nothing queued is parked until its sender queues more.
fn run(streams: mpsc::Receiver<Arc<Stream>>) {
    let lateness = crate::metrics::rtp_send_lateness();
    let mut heap: BinaryHeap<Reverse<Next>> = BinaryHeap::new();
    loop {
        let message = match heap.peek() {
            Some(Reverse(next)) => {
                streams.recv_timeout(next.due.saturating_duration_since(Instant::now() + EARLY))
            }
            None => streams.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match message {
            Ok(stream) => schedule(&mut heap, stream),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while heap.peek().is_some_and(|Reverse(next)| next.due <= Instant::now() + EARLY) {
            let Reverse(Next { stream, .. }) = heap.pop().expect("peeked");
            if stream.closed.load(Ordering::Relaxed) {
                continue; // the call is over: forget it
            }
            let frame = stream.queue.lock().expect("pacer queue lock").frames.pop_front();
            if let Some(frame) = frame {
                if let Some(packet) = stream.path.outgoing(frame.packet)
                    && let Err(e) = stream.socket.send_to(&packet, frame.to)
                {
                    tracing::debug!(to = %frame.to, error = %e, "rtp: send failed");
                }
                let sent = Instant::now();
                lateness.record(sent.saturating_duration_since(stream.due(frame.n)).as_secs_f64());
                if let Some(started) = frame.started {
                    let _ = started.send(sent);
                }
                if let Some(done) = frame.done {
                    let _ = done.send(());
                }
            }
            schedule(&mut heap, stream);
        }
    }
}

/// Puts `stream` back on the heap at its next queued frame's slot, or parks it when
/// nothing is queued.
fn schedule(heap: &mut BinaryHeap<Reverse<Next>>, stream: Arc<Stream>) {
    let mut queue = stream.queue.lock().expect("pacer queue lock");
    let Some(n) = queue.frames.front().map(|f| f.n) else {
        queue.parked = true;
        return;
    };
    drop(queue);
    let (due, id) = (stream.due(n), Arc::as_ptr(&stream) as usize);
    heap.push(Reverse(Next { due, id, stream }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u64, to: SocketAddr) -> Frame {
        Frame { n, packet: n.to_be_bytes().to_vec(), to, started: None, done: None }
    }

    fn peer() -> (UdpSocket, SocketAddr, Paced) {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = peer.local_addr().unwrap();
        (peer, to, Paced::new(UdpSocket::bind("127.0.0.1:0").unwrap(), Instant::now(), Arc::default()))
    }

    /// Receives `count` packets on `peer`: the slot each carries, and when it came.
    fn receive(peer: &UdpSocket, count: usize) -> Vec<(u64, Instant)> {
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        (0..count)
            .map(|_| {
                let len = peer.recv(&mut buf).unwrap();
                (u64::from_be_bytes(buf[..len].try_into().unwrap()), Instant::now())
            })
            .collect()
    }

    #[test]
    fn frames_go_out_in_order_on_their_slots_and_not_before() {
        let (peer, to, paced) = peer();
        // Queued all at once, ahead of time, with slots 3 and 4 skipped.
        for n in [0, 1, 2, 5, 6] {
            paced.push(frame(n, to));
        }
        let got = receive(&peer, 5);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2, 5, 6]);
        for (n, at) in got {
            assert!(at + EARLY >= paced.due(n), "slot {n} went out early");
        }
    }

    #[test]
    fn a_stream_with_nothing_queued_comes_back_with_its_next_frame_and_tells_who_waits() {
        let (peer, to, paced) = peer();
        paced.push(frame(0, to));
        receive(&peer, 1);
        // Nothing queued for a while: the pacer stops looking; a frame brings it back.
        std::thread::sleep(FRAME_TIME * 3);
        let (started, started_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        paced.push(Frame { started: Some(started), done: Some(done), ..frame(4, to) });
        let (n, at) = receive(&peer, 1)[0];
        assert_eq!(n, 4);
        let sent = started_rx.blocking_recv().expect("told when it went out");
        // Neither stamp before its slot. (`sent` is taken just after the send: on a busy
        // machine the peer may stamp its arrival first, so the two are not ordered.)
        assert!(sent + EARLY >= paced.due(4) && at + EARLY >= paced.due(4));
        done_rx.blocking_recv().expect("told it went out");
    }

    #[test]
    fn frames_taken_back_are_not_sent_and_their_slots_can_be_filled_again() {
        let (peer, to, paced) = peer();
        for n in 0..6 {
            paced.push(frame(n, to));
        }
        assert_eq!(paced.take_back(3), Some((3, 3)));
        assert_eq!(paced.take_back(9), None, "nothing queued from slot 9 on");
        paced.push(Frame { packet: 42u64.to_be_bytes().to_vec(), ..frame(3, to) });
        let got = receive(&peer, 4);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2, 42]);
        peer.set_read_timeout(Some(FRAME_TIME * 5)).unwrap();
        assert!(peer.recv(&mut [0u8; 16]).is_err(), "slots 4 and 5 were taken back");
    }

    #[test]
    fn a_dropped_stream_sends_nothing_more() {
        let (peer, to, paced) = peer();
        paced.push(frame(0, to));
        paced.push(frame(5, to));
        receive(&peer, 1);
        drop(paced);
        peer.set_read_timeout(Some(FRAME_TIME * 10)).unwrap();
        assert!(peer.recv(&mut [0u8; 16]).is_err(), "slot 5 was dropped with its stream");
    }
}
