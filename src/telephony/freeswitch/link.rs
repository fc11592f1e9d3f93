//! The one event-socket connection a carrier keeps to FreeSWITCH (inbound mode): it
//! connects, authenticates, subscribes, and reconnects with backoff when the connection
//! drops. Commands are written in order and their replies (which FreeSWITCH sends in the
//! same order) handed back; events are routed to the call whose channel they concern.
//!
//! Channels that must end although no call is watching them any more (a dial abandoned
//! before the channel existed, calls cut off by a lost connection) are *doomed*: they are
//! killed now, again whenever an event shows them alive while no kill has been accepted,
//! and after every reconnect, until their hangup is seen or a while has passed.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::esl::{self, Event, Frame, FrameReader};

/// The events calls need: the channel's birth, ringing, answer and hangup, the start and
/// end of a spoken line (`speak` is an application: it ends with CHANNEL_EXECUTE_COMPLETE,
/// not PLAYBACK_STOP, which only file playback sends), speech recognised on the FreeSWITCH
/// side, keys the callee pressed, and the results of `bgapi originate`.
/// CHANNEL_PARK announces calls to us that the dialplan parked (see `INBOUND_VARIABLE`).
pub const EVENTS: &str = "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER \
     CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE DETECTED_SPEECH DTMF BACKGROUND_JOB \
     CHANNEL_PARK";

/// The channel variable the dialplan sets (`callcenter_inbound=true`) on a call it parks
/// for the server to answer; parked channels without it (our own outbound calls, other
/// applications' calls) are left alone.
pub const INBOUND_VARIABLE: &str = "variable_callcenter_inbound";

/// A call to us, parked: its CHANNEL_PARK event, and its channel's signals from then on.
pub type Parked = (Arc<Event>, mpsc::UnboundedReceiver<Signal>);

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Connecting, authenticating and subscribing must be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a doomed channel is looked out for (longer than any ring).
const DOOM_TTL: Duration = Duration::from_secs(15 * 60);

/// What a call hears about its channel.
#[derive(Debug, Clone)]
pub enum Signal {
    Event(Arc<Event>),
    /// The connection to FreeSWITCH dropped: nothing more will be heard of this channel.
    LinkLost,
}

/// The command could not be sent or its reply was lost: the connection is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not connected to the FreeSWITCH event socket")]
pub struct LinkDown;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub password: String,
}

impl Endpoint {
    fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

enum Request {
    Command { bytes: Vec<u8>, reply: oneshot::Sender<Result<Frame, LinkDown>> },
    Kill { uuid: String, cause: String },
}

type Routes = Mutex<HashMap<String, mpsc::UnboundedSender<Signal>>>;

struct Shared {
    routes: Routes,
    up: watch::Sender<bool>,
    /// Where calls to us go, once the carrier takes them.
    parked: Mutex<Option<mpsc::UnboundedSender<Parked>>>,
}

/// A handle on the connection; cheap to clone. The connection task ends once every
/// handle is gone.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
}

impl Link {
    /// Starts connecting in the background (needs a Tokio runtime).
    pub fn start(endpoint: Endpoint) -> Link {
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            up: watch::channel(false).0,
            parked: Mutex::new(None),
        });
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(endpoint, shared.clone(), rx));
        Link { shared, requests }
    }

    /// Waits up to `limit` for the connection to be up; whether it is.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        let mut up = self.shared.up.subscribe();
        matches!(tokio::time::timeout(limit, up.wait_for(|up| *up)).await, Ok(Ok(_)))
    }

    /// Starts routing the events of channel `uuid` (and of the `bgapi` job of that id)
    /// to the returned route, until it is dropped.
    pub fn route(&self, uuid: &str) -> Route {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.routes.lock().expect("routes lock").insert(uuid.to_string(), tx);
        Route { uuid: uuid.to_string(), rx, shared: self.shared.clone() }
    }

    /// From now on, calls to us that the dialplan parks come here, their channels
    /// already routed (`Link::adopt`); `None` if they are taken already.
    pub fn take_parked(&self) -> Option<mpsc::UnboundedReceiver<Parked>> {
        let mut parked = self.shared.parked.lock().expect("parked lock");
        if parked.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *parked = Some(tx);
        Some(rx)
    }

    /// The route of a parked call's channel, whose signals were routed from its park on.
    pub fn adopt(&self, uuid: &str, rx: mpsc::UnboundedReceiver<Signal>) -> Route {
        Route { uuid: uuid.to_string(), rx, shared: self.shared.clone() }
    }

    /// `api <command>`: the reply's text (the api/response body).
    pub async fn api(&self, command: &str) -> Result<String, LinkDown> {
        Ok(self.send(&format!("api {command}"), &[]).await?.reply_text())
    }

    /// `bgapi <command>` with our own `Job-UUID`: the command/reply's `Reply-Text`.
    pub async fn bgapi(&self, command: &str, job_uuid: &str) -> Result<String, LinkDown> {
        Ok(self.send(&format!("bgapi {command}"), &[("Job-UUID", job_uuid)]).await?.reply_text())
    }

    /// `sendmsg <uuid>` with the given headers: the command/reply's `Reply-Text`.
    pub async fn sendmsg(&self, uuid: &str, headers: &[(&str, &str)]) -> Result<String, LinkDown> {
        Ok(self.send(&format!("sendmsg {uuid}"), headers).await?.reply_text())
    }

    async fn send(&self, line: &str, headers: &[(&str, &str)]) -> Result<Frame, LinkDown> {
        let bytes = match esl::command(line, headers) {
            Ok(b) => b,
            Err(e) => {
                // Callers keep line breaks out; this is a bug, not a network failure.
                tracing::error!(error = %e, "refusing to send a malformed command to FreeSWITCH");
                return Err(LinkDown);
            }
        };
        let (reply, rx) = oneshot::channel();
        self.requests.send(Request::Command { bytes, reply }).map_err(|_| LinkDown)?;
        rx.await.map_err(|_| LinkDown)?
    }

    /// Kills channel `uuid` with `cause`, now and whenever it shows up alive later (see
    /// the module doc). Needs no runtime: safe to call from `Drop`.
    pub fn kill(&self, uuid: &str, cause: &str) {
        let _ = self.requests.send(Request::Kill { uuid: uuid.to_string(), cause: cause.to_string() });
    }
}

/// The events of one channel.
pub struct Route {
    uuid: String,
    pub rx: mpsc::UnboundedReceiver<Signal>,
    shared: Arc<Shared>,
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.shared.routes.lock() {
            routes.remove(&self.uuid);
        }
    }
}

struct Doom {
    cause: String,
    since: Instant,
    /// FreeSWITCH accepted a kill (`+OK`) on this connection: the hangup is under way.
    killed: bool,
}

impl Doom {
    fn new(cause: String) -> Doom {
        Doom { cause, since: Instant::now(), killed: false }
    }
}

/// Connects, serves, and reconnects until every `Link` is dropped.
async fn run(endpoint: Endpoint, shared: Arc<Shared>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let addr = endpoint.addr();
    let mut doomed: HashMap<String, Doom> = HashMap::new();
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    loop {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&endpoint)).await {
            Ok(Ok((reader, writer))) => {
                tracing::info!(%addr, "connected to the FreeSWITCH event socket");
                backoff = FIRST_BACKOFF;
                failures = 0;
                shared.up.send_replace(true);
                let mut conn = Conn { reader, writer, pending: VecDeque::new(), shared: &shared };
                let end = conn.serve(&mut requests, &mut doomed).await;
                shared.up.send_replace(false);
                drop(conn);
                // The calls still routed are cut off: tell them, and kill their channels
                // once connected again (FreeSWITCH keeps parked channels up).
                let routes: Vec<_> = shared.routes.lock().expect("routes lock").drain().collect();
                if !routes.is_empty() {
                    tracing::warn!(%addr, calls = routes.len(), "calls in progress are cut off by the lost connection");
                }
                for (uuid, tx) in routes {
                    let _ = tx.send(Signal::LinkLost);
                    tracing::warn!(call_id = %uuid, "call ended: lost the FreeSWITCH event socket");
                    doomed.entry(uuid).or_insert_with(|| Doom::new("NORMAL_TEMPORARY_FAILURE".into()));
                }
                match end {
                    End::Exit => return,
                    End::Lost(why) => {
                        tracing::warn!(%addr, error = %why, "lost the FreeSWITCH event socket; reconnecting")
                    }
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                // Every failure while it is new, then now and then, not every 10 s forever.
                if failures <= 3 || failures.is_power_of_two() {
                    tracing::warn!(%addr, error = %e, failures, "cannot connect to the FreeSWITCH event socket; retrying in {backoff:?}");
                }
            }
            Err(_) => {
                failures += 1;
                tracing::warn!(%addr, "the FreeSWITCH event socket did not complete the handshake in {HANDSHAKE_TIMEOUT:?}");
            }
        }
        // Wait before the next attempt, failing commands at once meanwhile.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                request = requests.recv() => match request {
                    None => return,
                    Some(Request::Command { reply, .. }) => { let _ = reply.send(Err(LinkDown)); }
                    Some(Request::Kill { uuid, cause }) => { doomed.insert(uuid, Doom::new(cause)); }
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects, answers the `auth/request`, and subscribes to [`EVENTS`].
async fn handshake(endpoint: &Endpoint) -> io::Result<(FrameReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let stream = TcpStream::connect(endpoint.addr()).await?;
    stream.set_nodelay(true)?;
    let (read, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let closed = || io::Error::new(io::ErrorKind::UnexpectedEof, "FreeSWITCH closed the connection");
    let hello = reader.next().await?.ok_or_else(closed)?;
    match hello.content_type() {
        "auth/request" => {}
        // An ACL in event_socket.conf.xml refused our address.
        "text/rude-rejection" => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("FreeSWITCH refused the connection: {}", hello.reply_text()),
            ));
        }
        other => return Err(io::Error::other(format!("expected auth/request, got `{other}`"))),
    }
    let auth = esl::command(&format!("auth {}", endpoint.password), &[])
        .map_err(|_| io::Error::other("freeswitch.password may not contain a line break"))?;
    writer.write_all(&auth).await?;
    let reply = reader.next().await?.ok_or_else(closed)?;
    if !reply.reply_text().starts_with("+OK") {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("authentication failed ({}): check freeswitch.password", reply.reply_text()),
        ));
    }
    writer.write_all(&esl::command(&format!("event plain {EVENTS}"), &[])?).await?;
    let reply = reader.next().await?.ok_or_else(closed)?;
    if !reply.reply_text().starts_with("+OK") {
        return Err(io::Error::other(format!("subscribing to events failed: {}", reply.reply_text())));
    }
    Ok((reader, writer))
}

enum End {
    /// Every handle is gone.
    Exit,
    Lost(io::Error),
}

/// What a reply in the queue goes to.
enum Pending {
    Caller(oneshot::Sender<Result<Frame, LinkDown>>),
    /// A kill of a doomed channel: only logged.
    Kill(String),
}

struct Conn<'a> {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Callers waiting for replies, in the order their commands were written.
    pending: VecDeque<Pending>,
    shared: &'a Shared,
}

impl Conn<'_> {
    async fn serve(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<Request>,
        doomed: &mut HashMap<String, Doom>,
    ) -> End {
        doomed.retain(|_, d| d.since.elapsed() < DOOM_TTL);
        doomed.values_mut().for_each(|d| d.killed = false);
        let leftover: Vec<(String, String)> =
            doomed.iter().map(|(u, d)| (u.clone(), d.cause.clone())).collect();
        for (uuid, cause) in leftover {
            if let Err(e) = self.kill(&uuid, &cause).await {
                return End::Lost(e);
            }
        }
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let written = match request {
                        None => return End::Exit,
                        Some(Request::Command { bytes, reply }) => {
                            self.pending.push_back(Pending::Caller(reply));
                            self.writer.write_all(&bytes).await
                        }
                        Some(Request::Kill { uuid, cause }) => {
                            doomed.retain(|_, d| d.since.elapsed() < DOOM_TTL);
                            doomed.insert(uuid.clone(), Doom::new(cause.clone()));
                            self.kill(&uuid, &cause).await
                        }
                    };
                    if let Err(e) = written {
                        return End::Lost(e);
                    }
                }
                frame = self.reader.next() => match frame {
                    Ok(Some(frame)) => {
                        if let Err(e) = self.dispatch(frame, doomed).await {
                            return End::Lost(e);
                        }
                    }
                    Ok(None) => return End::Lost(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by FreeSWITCH")),
                    Err(e) => return End::Lost(e),
                },
            }
        }
    }

    async fn kill(&mut self, uuid: &str, cause: &str) -> io::Result<()> {
        let bytes = esl::command(&format!("api uuid_kill {uuid} {cause}"), &[])?;
        self.pending.push_back(Pending::Kill(uuid.to_string()));
        self.writer.write_all(&bytes).await
    }

    async fn dispatch(&mut self, frame: Frame, doomed: &mut HashMap<String, Doom>) -> io::Result<()> {
        match frame.content_type() {
            "command/reply" | "api/response" => match self.pending.pop_front() {
                Some(Pending::Caller(tx)) => {
                    let _ = tx.send(Ok(frame));
                }
                Some(Pending::Kill(uuid)) => {
                    let reply = frame.reply_text();
                    tracing::debug!(call_id = %uuid, %reply, "FreeSWITCH: uuid_kill");
                    // "-ERR No such channel!": not (yet) there; its first event brings another kill.
                    if let (true, Some(doom)) = (reply.starts_with("+OK"), doomed.get_mut(&uuid)) {
                        doom.killed = true;
                    }
                }
                None => {
                    tracing::warn!(reply = %frame.reply_text(), "FreeSWITCH sent a reply nobody asked for")
                }
            },
            "text/event-plain" => {
                let event = match Event::parse_plain(&frame.body) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an event FreeSWITCH sent that could not be read");
                        return Ok(());
                    }
                };
                self.route(event, doomed).await?;
            }
            "text/disconnect-notice" => {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "FreeSWITCH disconnected us"));
            }
            other => tracing::debug!(content_type = other, "ignoring an event socket frame"),
        }
        Ok(())
    }

    async fn route(&mut self, event: Event, doomed: &mut HashMap<String, Doom>) -> io::Result<()> {
        let uuid = match event.name() {
            "BACKGROUND_JOB" => event.header("Job-UUID"),
            _ => event.unique_id(),
        };
        let Some(uuid) = uuid.map(str::to_string) else { return Ok(()) };
        if let Some(doom) = doomed.get(&uuid) {
            match event.name() {
                "CHANNEL_HANGUP_COMPLETE" => {
                    doomed.remove(&uuid);
                }
                "BACKGROUND_JOB" if event.body.as_deref().is_some_and(|b| !b.starts_with("+OK")) => {
                    // The originate failed: no channel is left.
                    doomed.remove(&uuid);
                }
                "CHANNEL_CREATE" | "CHANNEL_PROGRESS" | "CHANNEL_PROGRESS_MEDIA" | "CHANNEL_ANSWER"
                    if !doom.killed =>
                {
                    let cause = doom.cause.clone();
                    tracing::info!(call_id = %uuid, event = event.name(), "hanging up a channel that is no longer wanted");
                    self.kill(&uuid, &cause).await?;
                }
                _ => {}
            }
        }
        let tx = self.shared.routes.lock().expect("routes lock").get(&uuid).cloned();
        if tx.is_none() && event.name() == "CHANNEL_PARK" && event.header(INBOUND_VARIABLE) == Some("true") {
            // A call to us: its channel is routed before any later event of it is read.
            let parked = self.shared.parked.lock().expect("parked lock").clone();
            if let Some(parked) = parked {
                let (route, rx) = mpsc::unbounded_channel();
                self.shared.routes.lock().expect("routes lock").insert(uuid.clone(), route);
                let _ = parked.send((Arc::new(event), rx));
                return Ok(());
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(Signal::Event(Arc::new(event)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let e = |host: &str| Endpoint { host: host.into(), port: 8021, password: String::new() };
        assert_eq!(e("127.0.0.1").addr(), "127.0.0.1:8021");
        assert_eq!(e("fs.local").addr(), "fs.local:8021");
        assert_eq!(e("::1").addr(), "[::1]:8021");
    }
}
