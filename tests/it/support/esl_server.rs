//! A fake FreeSWITCH for tests: a TCP server that speaks mod_event_socket's inbound wire
//! protocol as FreeSWITCH's source and documentation describe it, with scripted callees.
//!
//! What it does as FreeSWITCH does:
//! - on connect: `Content-Type: auth/request`; `auth <password>` → `command/reply` with
//!   `Reply-Text: +OK accepted`, or `-ERR invalid`, a `text/disconnect-notice` and a close;
//! - `event plain <NAMES…>` → `+OK event listener enabled plain`; afterwards only those
//!   events are sent, as `text/event-plain` frames with `Content-Length` framing and
//!   URL-encoded header values (`switch_event_serialize` / `switch_url_encode`), an event
//!   body after its own `Content-Length`;
//! - `api <cmd>` → `api/response` with `Content-Length`; `bgapi <cmd>` (with an optional
//!   `Job-UUID` header) → `Reply-Text: +OK Job-UUID: <id>` and `Job-UUID: <id>`, later a
//!   `BACKGROUND_JOB` event whose body is the command's output;
//! - `originate {origination_uuid=…,originate_timeout=…}<dial string> &park()`: the channel
//!   takes the given uuid; output `+OK <uuid>` when answered, `-ERR <CAUSE>` when not;
//! - `uuid_kill <uuid> [cause]` → `+OK` (then the hangup) or `-ERR No such channel!`;
//!   `uuid_record <uuid> start <path>` → `+OK Success` (the WAV and its directory are
//!   written at hangup); `uuid_break` → `+OK`;
//! - `sched_api +<secs> <group> <command>` → `+OK Added: <task>`, the command run as an API
//!   command when its time comes; `sched_del <task>` or `sched_del <group>` →
//!   `+OK Deleted: <n>` (mod_commands reads an all-digit argument as a task number);
//! - `sendmsg <uuid>` with `call-command: execute` → `+OK`, then CHANNEL_EXECUTE and, when
//!   the application is done, CHANNEL_EXECUTE_COMPLETE carrying the `Event-UUID` as
//!   `Application-UUID`; `-ERR invalid session id [<uuid>]` for an unknown channel;
//! - CHANNEL_HANGUP_COMPLETE carries `Hangup-Cause` and the channel's variables
//!   (`variable_proto_specific_hangup_cause: sip:486`, `variable_sip_term_status`);
//! - a key the callee presses is a DTMF channel event with `DTMF-Digit`, `DTMF-Duration`
//!   (in samples) and `DTMF-Source`;
//! - `uuid_break <uuid> [all]` ends the application under way at once (its
//!   CHANNEL_EXECUTE_COMPLETE follows);
//! - a call to the server (`call_in`) arrives as the documented dialplan parks it: an
//!   inbound channel (`Call-Direction: inbound`, the caller's `Caller-Caller-ID-Number`,
//!   the DID as `Caller-Destination-Number`, `variable_callcenter_inbound: true`)
//!   announced by CHANNEL_PARK; `uuid_answer <uuid>` → `+OK` and CHANNEL_ANSWER, or
//!   `-ERR No such channel!` once it is gone;
//! - `uuid_bridge <uuid> <other>` → `+OK <other>` for two answered channels, then a
//!   CHANNEL_BRIDGE event (with `Other-Leg-Unique-ID`); `-ERR no such channel` otherwise.
//!   When one of two bridged channels hangs up, the other is hung up too (the leg was
//!   originated with `hangup_after_bridge=true`);
//! - `uuid_audio_stream <uuid> start <url> <mix> <rate> [<metadata>]` (mod_audio_stream)
//!   and `uuid_audio_fork …` (mod_audio_fork, which asks for the websocket subprotocol
//!   `audiostream.drachtio.org`) → `+OK Success`: the module connects to the url, sends the
//!   metadata as a text frame, then the channel's read audio (the callee's) as binary
//!   frames of 16-bit little-endian PCM, 20 ms each, in real time.
//!
//! What it invents: the callees (see [`Callee`]) and a speech recogniser whose results
//! arrive as DETECTED_SPEECH events.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// How the callee of a number behaves.
#[derive(Debug, Clone)]
pub enum Callee {
    /// Answers; after hearing the first line says `says` (recognised speech), if any.
    Answers { says: Option<&'static str> },
    /// Answers, and presses `key` while the first line is being spoken.
    Presses { key: &'static str },
    /// Answers and hangs up (BYE) after hearing this many lines.
    HangsUpAfter { lines: usize },
    /// Answers; after this many lines FreeSWITCH's event socket connections drop.
    LinkDropsAfter { lines: usize },
    /// The network answers with a final SIP response, e.g. USER_BUSY / 486.
    Rejects { cause: &'static str, sip: u16 },
    /// Rings until `originate_timeout`, when FreeSWITCH cancels it.
    RingsOut,
    /// Rings until `uuid_kill`.
    RingsUntilKilled,
    /// Answers and says `voice` (8 kHz) into the call's audio stream, once the first line
    /// has been spoken, or `over_first_line`, 300 ms after it began; silence otherwise.
    Speaks { voice: Arc<Vec<i16>>, over_first_line: bool },
}

/// A call's audio stream, as the module opened it.
#[derive(Debug, Clone)]
pub struct AudioStream {
    pub url: String,
    /// The subprotocol the server accepted, if any.
    pub protocol: Option<String>,
    /// Frames sent so far.
    pub frames: usize,
}

pub const SAYS: &str = "好的，我知道了。";

/// A running fake; stops when dropped.
pub struct FakeFreeswitch {
    pub addr: SocketAddr,
    switch: Switch,
    accept: AbortHandle,
}

#[derive(Clone)]
struct Switch(Arc<Mutex<State>>);

struct State {
    password: String,
    callees: Vec<(String, Callee)>,
    speak_delay: Duration,
    /// How long originate takes to create the channel.
    create_delay: Duration,
    commands: Vec<String>,
    auths: usize,
    next_conn: u64,
    conns: HashMap<u64, Conn>,
    channels: HashMap<String, Channel>,
    /// `sched_api` tasks not yet run: task number → group.
    scheduled: HashMap<u64, String>,
    next_task: u64,
    /// Audio streams opened, by channel.
    streams: HashMap<String, AudioStream>,
    /// Lines cut short by `uuid_break`.
    broken_lines: usize,
}

struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Subscribed event names; `None` until `event`.
    events: Option<Vec<String>>,
    tasks: Vec<AbortHandle>,
}

struct Channel {
    name: String,
    phone: String,
    callee: Callee,
    job: Option<String>,
    originate_arg: String,
    answered: bool,
    up: bool,
    record: Option<PathBuf>,
    lines: usize,
    /// Lines begun and lines done, for the callee's audio to follow.
    progress: tokio::sync::watch::Sender<(usize, usize)>,
    /// Ends the application under way (`uuid_break`).
    breaker: Arc<tokio::sync::Notify>,
    /// The caller's number, for a call to the server.
    caller: Option<String>,
    /// The channel it is bridged to (`uuid_bridge`).
    bridged_to: Option<String>,
}

impl FakeFreeswitch {
    /// Listens on a free port with the password `ClueCon`.
    pub async fn start() -> FakeFreeswitch {
        Self::start_on(0, "ClueCon").await
    }

    pub async fn start_on(port: u16, password: &str) -> FakeFreeswitch {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the fake event socket");
        let addr = listener.local_addr().unwrap();
        let switch = Switch(Arc::new(Mutex::new(State {
            password: password.to_string(),
            callees: Vec::new(),
            speak_delay: Duration::from_millis(20),
            create_delay: Duration::from_millis(5),
            commands: Vec::new(),
            auths: 0,
            next_conn: 0,
            conns: HashMap::new(),
            channels: HashMap::new(),
            scheduled: HashMap::new(),
            next_task: 1,
            streams: HashMap::new(),
            broken_lines: 0,
        })));
        let accept = tokio::spawn({
            let switch = switch.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let (read, mut write) = stream.into_split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                    let writer = tokio::spawn(async move {
                        while let Some(bytes) = rx.recv().await {
                            if write.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                    });
                    let id = {
                        let mut s = switch.lock();
                        s.next_conn += 1;
                        s.next_conn
                    };
                    let reader = tokio::spawn(switch.clone().serve(id, read, tx.clone()));
                    switch.lock().conns.insert(
                        id,
                        Conn { tx, events: None, tasks: vec![reader.abort_handle(), writer.abort_handle()] },
                    );
                }
            }
        });
        FakeFreeswitch { addr, switch, accept: accept.abort_handle() }
    }

    /// A call from `caller` to the server's number `did`, parked by the dialplan for the
    /// server and announced; the caller behaves as `callee` once answered. Its channel's uuid.
    pub fn call_in(&self, caller: &str, did: &str, callee: Callee) -> String {
        let uuid = format!("{}", uuid::Uuid::new_v4());
        self.switch.lock().channels.insert(
            uuid.clone(),
            Channel {
                name: format!("sofia/external/{caller}@203.0.113.7"),
                phone: did.to_string(),
                callee,
                job: None,
                originate_arg: String::new(),
                answered: false,
                up: true,
                record: None,
                lines: 0,
                progress: tokio::sync::watch::channel((0, 0)).0,
                breaker: Arc::new(tokio::sync::Notify::new()),
                caller: Some(caller.to_string()),
                bridged_to: None,
            },
        );
        self.switch.channel_event(&uuid, "CHANNEL_CREATE", &[]);
        self.switch.channel_event(&uuid, "CHANNEL_PARK", &[]);
        uuid
    }

    /// Whether the channel was answered.
    pub fn answered(&self, uuid: &str) -> bool {
        self.switch.lock().channels.get(uuid).is_some_and(|c| c.answered)
    }

    /// The caller hangs up a call to the server.
    pub fn caller_hangs_up(&self, uuid: &str) {
        let answered = self.answered(uuid);
        self.switch.hang_up(uuid, "NORMAL_CLEARING", Some(if answered { 200 } else { 487 }), "");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Numbers ending in `suffix` reach `callee`; the rest answer and say [`SAYS`].
    pub fn callee(&self, suffix: &str, callee: Callee) {
        self.switch.lock().callees.push((suffix.to_string(), callee));
    }

    /// How long speaking one line takes.
    pub fn speak_delay(&self, d: Duration) {
        self.switch.lock().speak_delay = d;
    }

    /// How long an originate takes to create its channel.
    pub fn create_delay(&self, d: Duration) {
        self.switch.lock().create_delay = d;
    }

    /// Every command received, as sent (its line, then any header lines).
    pub fn commands(&self) -> Vec<String> {
        self.switch.lock().commands.clone()
    }

    /// Successful `auth`s so far (one per connection).
    pub fn auths(&self) -> usize {
        self.switch.lock().auths
    }

    pub fn channel_up(&self, uuid: &str) -> bool {
        self.switch.lock().channels.get(uuid).is_some_and(|c| c.up)
    }

    /// The far end of an answered channel hangs up (a BYE).
    pub fn hang_up_channel(&self, uuid: &str) {
        self.switch.hang_up(uuid, "NORMAL_CLEARING", Some(200), "NORMAL_CLEARING");
    }

    /// The uuids of the channels made so far, and the dial string of each.
    pub fn channels(&self) -> Vec<(String, String)> {
        self.switch.lock().channels.iter().map(|(u, c)| (u.clone(), c.name.clone())).collect()
    }

    pub fn channel_exists(&self, uuid: &str) -> bool {
        self.switch.lock().channels.contains_key(uuid)
    }

    /// The call's audio stream, once the module has connected.
    pub fn audio_stream(&self, uuid: &str) -> Option<AudioStream> {
        self.switch.lock().streams.get(uuid).cloned()
    }

    /// Lines `uuid_break` has cut short.
    pub fn broken_lines(&self) -> usize {
        self.switch.lock().broken_lines
    }

    /// Waits until a command satisfying `matches` has arrived; returns it.
    pub async fn wait_for_command(&self, limit: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(c) = self.commands().into_iter().find(|c| matches(c)) {
                return c;
            }
            assert!(tokio::time::Instant::now() < deadline, "no such command; got: {:#?}", self.commands());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `done` holds.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&FakeFreeswitch) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out; commands: {:#?}", self.commands());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Cuts every event socket connection, as a FreeSWITCH restart or a network failure
    /// would (calls stay up, as parked channels do).
    pub fn drop_connections(&self) {
        self.switch.drop_connections();
    }
}

impl Drop for FakeFreeswitch {
    fn drop(&mut self) {
        self.accept.abort();
        self.switch.drop_connections();
    }
}

impl Switch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    fn drop_connections(&self) {
        let conns: Vec<Conn> = self.lock().conns.drain().map(|(_, c)| c).collect();
        for conn in conns {
            conn.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    fn send(&self, conn: u64, bytes: impl Into<Vec<u8>>) {
        if let Some(c) = self.lock().conns.get(&conn) {
            let _ = c.tx.send(bytes.into());
        }
    }

    async fn serve(self, id: u64, read: OwnedReadHalf, tx: mpsc::UnboundedSender<Vec<u8>>) {
        let _ = tx.send(b"Content-Type: auth/request\n\n".to_vec());
        let mut reader = BufReader::new(read);
        let mut authed = false;
        while let Some((line, headers)) = read_command(&mut reader).await {
            {
                let mut text = line.clone();
                for (k, v) in &headers {
                    text.push_str(&format!("\n{k}: {v}"));
                }
                self.lock().commands.push(text);
            }
            if line == "exit" {
                let _ = tx.send(reply("+OK bye"));
                break;
            }
            if !authed {
                match line.strip_prefix("auth ") {
                    Some(password) if password == self.lock().password => {
                        authed = true;
                        self.lock().auths += 1;
                        let _ = tx.send(reply("+OK accepted"));
                    }
                    Some(_) => {
                        let _ = tx.send(reply("-ERR invalid"));
                        let bye = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
                        let _ = tx.send(
                            format!(
                                "Content-Type: text/disconnect-notice\nContent-Length: {}\n\n{bye}",
                                bye.len()
                            )
                            .into_bytes(),
                        );
                        break;
                    }
                    None => {
                        let _ = tx.send(reply("-ERR command not found"));
                    }
                }
                continue;
            }
            let answer = self.command(id, &line, &headers);
            let _ = tx.send(answer);
        }
        // Closing: the writer flushes what is queued, then the socket closes.
        self.lock().conns.remove(&id);
    }

    /// Handles an authenticated command; returns the reply frame.
    fn command(&self, conn: u64, line: &str, headers: &[(String, String)]) -> Vec<u8> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "event" => {
                let mut words = rest.split_whitespace();
                let format = words.next().unwrap_or("");
                let names: Vec<String> = words.map(str::to_string).collect();
                if format != "plain" || names.is_empty() {
                    return reply("-ERR no keywords supplied");
                }
                if let Some(c) = self.lock().conns.get_mut(&conn) {
                    c.events = Some(names);
                }
                reply("+OK event listener enabled plain")
            }
            "api" => {
                let (cmd, arg) = rest.split_once(' ').unwrap_or((rest, ""));
                let body = self.api(cmd, arg, None);
                format!("Content-Type: api/response\nContent-Length: {}\n\n{body}", body.len()).into_bytes()
            }
            "bgapi" => {
                let job =
                    header(headers, "Job-UUID").unwrap_or("f2b6d2a4-0000-4000-8000-000000000001").to_string();
                let (cmd, arg) = rest.split_once(' ').unwrap_or((rest, ""));
                if cmd == "originate" {
                    self.api(cmd, arg, Some(&job)); // answers with a BACKGROUND_JOB later
                } else {
                    let body = self.api(cmd, arg, None);
                    self.job_done(&job, cmd, arg, &body);
                }
                format!("Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n")
                    .into_bytes()
            }
            "sendmsg" => reply(&self.sendmsg(rest.trim(), headers)),
            _ => reply("-ERR command not found"),
        }
    }

    /// Runs an API command; its output.
    fn api(&self, cmd: &str, arg: &str, job: Option<&str>) -> String {
        match cmd {
            "originate" => match job {
                Some(job) => self.originate(arg, job),
                None => "-ERR the fake supports originate through bgapi only\n".into(),
            },
            "uuid_kill" => {
                let mut words = arg.split_whitespace();
                let uuid = words.next().unwrap_or("").to_string();
                let cause = words.next().unwrap_or("NORMAL_CLEARING").to_string();
                let answered = match self.lock().channels.get(&uuid) {
                    Some(c) if c.up => c.answered,
                    _ => return "-ERR No such channel!\n".into(),
                };
                let sw = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    // A BYE is answered 200; a CANCEL makes the INVITE end with 487.
                    sw.hang_up(&uuid, &cause, Some(if answered { 200 } else { 487 }), &cause);
                });
                "+OK\n".into()
            }
            "uuid_record" => {
                let mut words = arg.split_whitespace();
                let (uuid, action, path) = (words.next(), words.next(), words.next());
                let mut s = self.lock();
                match (uuid.and_then(|u| s.channels.get_mut(u)), action, path) {
                    (Some(c), Some("start"), Some(path)) if c.up => {
                        c.record = Some(PathBuf::from(path));
                        "+OK Success\n".into()
                    }
                    (None, ..) => "-ERR Cannot locate session!\n".into(),
                    _ => "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>]\n".into(),
                }
            }
            "uuid_answer" => {
                let uuid = arg.split_whitespace().next().unwrap_or("").to_string();
                {
                    let mut s = self.lock();
                    match s.channels.get_mut(&uuid) {
                        Some(c) if c.up => c.answered = true,
                        _ => return "-ERR No such channel!\n".into(),
                    }
                }
                self.channel_event(&uuid, "CHANNEL_ANSWER", &[("Answer-State", "answered")]);
                "+OK\n".into()
            }
            "uuid_break" => {
                let uuid = arg.split_whitespace().next().unwrap_or("");
                match self.lock().channels.get(uuid) {
                    Some(c) if c.up => {
                        c.breaker.notify_one();
                        "+OK\n".into()
                    }
                    _ => "-ERR No such channel!\n".into(),
                }
            }
            "uuid_audio_stream" | "uuid_audio_fork" => self.stream_audio(cmd, arg),
            "uuid_bridge" => {
                let mut words = arg.split_whitespace();
                let (a, b) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
                {
                    let mut s = self.lock();
                    let answered = |u: &str| s.channels.get(u).is_some_and(|c| c.up && c.answered);
                    if a == b || !answered(&a) || !answered(&b) {
                        return "-ERR no such channel\n".into();
                    }
                    s.channels.get_mut(&a).expect("up").bridged_to = Some(b.clone());
                    s.channels.get_mut(&b).expect("up").bridged_to = Some(a.clone());
                }
                self.channel_event(&a, "CHANNEL_BRIDGE", &[("Other-Leg-Unique-ID", b.as_str())]);
                format!("+OK {b}\n")
            }
            "sched_api" => {
                let mut words = arg.splitn(3, ' ');
                let (when, group, command) = (words.next(), words.next(), words.next());
                let secs = when.and_then(|w| w.strip_prefix('+')).and_then(|w| w.parse::<u64>().ok());
                let (Some(secs), Some(group), Some(command)) = (secs, group, command) else {
                    return "-ERR Invalid syntax\n".into();
                };
                let task = {
                    let mut s = self.lock();
                    let task = s.next_task;
                    s.next_task += 1;
                    s.scheduled.insert(task, group.to_string());
                    task
                };
                let (sw, command) = (self.clone(), command.to_string());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    if sw.lock().scheduled.remove(&task).is_some() {
                        let (cmd, arg) = command.split_once(' ').unwrap_or((&command, ""));
                        sw.api(cmd, arg, None);
                    }
                });
                format!("+OK Added: {task}\n")
            }
            "sched_del" => {
                let mut s = self.lock();
                let before = s.scheduled.len();
                match arg.trim().parse::<u64>() {
                    Ok(task) => {
                        s.scheduled.remove(&task);
                    }
                    Err(_) => s.scheduled.retain(|_, group| group != arg.trim()),
                }
                format!("+OK Deleted: {}\n", before - s.scheduled.len())
            }
            _ => format!("-ERR {cmd} Command not found!\n"),
        }
    }

    fn originate(&self, arg: &str, job: &str) -> String {
        let (vars, rest) = match arg.strip_prefix('{').and_then(|a| a.split_once('}')) {
            Some((vars, rest)) => (vars, rest),
            None => ("", arg),
        };
        let vars: HashMap<&str, &str> = vars.split(',').filter_map(|kv| kv.split_once('=')).collect();
        let target = rest.split_whitespace().next().unwrap_or("").to_string();
        let uuid = vars
            .get("origination_uuid")
            .copied()
            .unwrap_or("3c1e0000-0000-4000-8000-000000000001")
            .to_string();
        let timeout =
            Duration::from_secs(vars.get("originate_timeout").and_then(|t| t.parse().ok()).unwrap_or(60));
        let phone = target.rsplit('/').next().unwrap_or("").split('@').next().unwrap_or("").to_string();
        let (callee, create_delay) = {
            let s = self.lock();
            let callee = s
                .callees
                .iter()
                .rev()
                .find(|(suffix, _)| phone.ends_with(suffix.as_str()))
                .map(|(_, c)| c.clone())
                .unwrap_or(Callee::Answers { says: Some(SAYS) });
            (callee, s.create_delay)
        };
        let sw = self.clone();
        let job = job.to_string();
        let originate_arg = arg.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(create_delay).await;
            sw.lock().channels.insert(
                uuid.clone(),
                Channel {
                    name: target,
                    phone,
                    callee: callee.clone(),
                    job: Some(job.clone()),
                    originate_arg,
                    answered: false,
                    up: true,
                    record: None,
                    lines: 0,
                    progress: tokio::sync::watch::channel((0, 0)).0,
                    breaker: Arc::new(tokio::sync::Notify::new()),
                    caller: None,
                    bridged_to: None,
                },
            );
            sw.channel_event(&uuid, "CHANNEL_CREATE", &[]);
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !sw.is_up(&uuid) {
                return;
            }
            sw.channel_event(&uuid, "CHANNEL_PROGRESS", &[]);
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !sw.is_up(&uuid) {
                return;
            }
            match callee {
                Callee::Rejects { cause, sip } => {
                    // The job's result and the channel's hangup race in FreeSWITCH; here
                    // the result comes first.
                    sw.finish_job(&uuid, &format!("-ERR {cause}\n"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sw.hang_up(&uuid, cause, Some(sip), cause);
                }
                Callee::RingsOut => {
                    tokio::time::sleep(timeout.saturating_sub(Duration::from_millis(20))).await;
                    if sw.is_up(&uuid) {
                        sw.hang_up(&uuid, "ORIGINATOR_CANCEL", Some(487), "NO_ANSWER");
                    }
                }
                Callee::RingsUntilKilled => {}
                Callee::Answers { .. }
                | Callee::Presses { .. }
                | Callee::HangsUpAfter { .. }
                | Callee::LinkDropsAfter { .. }
                | Callee::Speaks { .. } => {
                    if let Some(c) = sw.lock().channels.get_mut(&uuid) {
                        c.answered = true;
                    }
                    sw.channel_event(&uuid, "CHANNEL_ANSWER", &[("Answer-State", "answered")]);
                    sw.finish_job(&uuid, &format!("+OK {uuid}\n"));
                }
            }
        });
        String::new()
    }

    fn sendmsg(&self, uuid: &str, headers: &[(String, String)]) -> String {
        if !self.is_up(uuid) {
            return format!("-ERR invalid session id [{uuid}]");
        }
        if header(headers, "call-command") != Some("execute") {
            return "+OK".into();
        }
        let app = header(headers, "execute-app-name").unwrap_or("").to_string();
        let data = header(headers, "execute-app-arg").unwrap_or("").to_string();
        let app_uuid = header(headers, "Event-UUID").map(str::to_string);
        let delay = self.lock().speak_delay;
        let sw = self.clone();
        let uuid = uuid.to_string();
        tokio::spawn(async move {
            let mut app_headers = vec![("Application", app.clone()), ("Application-Data", data.clone())];
            if let Some(id) = &app_uuid {
                app_headers.push(("Application-UUID", id.clone()));
            }
            let borrowed: Vec<(&str, &str)> = app_headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            sw.channel_event(&uuid, "CHANNEL_EXECUTE", &borrowed);
            let breaker = match sw.lock().channels.get(&uuid) {
                Some(c) => {
                    c.progress.send_modify(|(begun, _)| *begun += 1);
                    c.breaker.clone()
                }
                None => return,
            };
            let pressing = match sw.lock().channels.get(&uuid) {
                Some(Channel { callee: Callee::Presses { key }, lines: 0, .. }) if app == "speak" => {
                    Some(*key)
                }
                _ => None,
            };
            if let Some(key) = pressing {
                let dtmf = [("DTMF-Digit", key), ("DTMF-Duration", "1600"), ("DTMF-Source", "RTP")];
                sw.channel_event(&uuid, "DTMF", &dtmf);
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = breaker.notified() => sw.lock().broken_lines += 1,
            }
            if !sw.is_up(&uuid) {
                return;
            }
            if let Some(c) = sw.lock().channels.get(&uuid) {
                c.progress.send_modify(|(_, done)| *done += 1);
            }
            let mut done = borrowed.clone();
            done.push(("Application-Response", "_none_"));
            sw.channel_event(&uuid, "CHANNEL_EXECUTE_COMPLETE", &done);
            if app != "speak" {
                return;
            }
            let (callee, lines) = {
                let mut s = sw.lock();
                let Some(c) = s.channels.get_mut(&uuid) else { return };
                c.lines += 1;
                (c.callee.clone(), c.lines)
            };
            match callee {
                Callee::Answers { says: Some(text) } if lines == 1 => {
                    sw.event("DETECTED_SPEECH", &uuid, &[("Speech-Type", "detected-speech")], Some(text));
                }
                Callee::HangsUpAfter { lines: n } if lines == n => {
                    sw.hang_up(&uuid, "NORMAL_CLEARING", Some(200), "NORMAL_CLEARING");
                }
                Callee::LinkDropsAfter { lines: n } if lines == n => {
                    // Once the line's end has gone out.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    sw.drop_connections();
                }
                _ => {}
            }
        });
        "+OK".into()
    }

    /// mod_audio_stream's or mod_audio_fork's `start`: connects to the url and streams the
    /// callee's audio until the channel ends.
    fn stream_audio(&self, cmd: &str, arg: &str) -> String {
        let words: Vec<&str> = arg.split_whitespace().collect();
        let [uuid, "start", url, "mono", "8k", metadata @ ..] = words.as_slice() else {
            return format!("-USAGE: {cmd} <uuid> start <wss-url> <mix-type> <sampling-rate> <metadata>\n");
        };
        let (voice, over_first_line, progress) = match self.lock().channels.get(*uuid) {
            Some(c) if c.up => match &c.callee {
                Callee::Speaks { voice, over_first_line } => {
                    (voice.clone(), *over_first_line, c.progress.subscribe())
                }
                _ => (Arc::new(Vec::new()), false, c.progress.subscribe()),
            },
            _ => return "-ERR Cannot locate session!\n".into(),
        };
        let fork = cmd == "uuid_audio_fork";
        let (sw, uuid, url, metadata) = (self.clone(), uuid.to_string(), url.to_string(), metadata.join(" "));
        tokio::spawn(async move {
            use futures::SinkExt;
            use tokio_tungstenite::tungstenite::Message;
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = url.as_str().into_client_request().expect("a websocket url");
            if fork {
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", "audiostream.drachtio.org".parse().unwrap());
            }
            let (mut ws, response) = match tokio_tungstenite::connect_async(request).await {
                Ok(connected) => connected,
                Err(e) => {
                    eprintln!("fake FreeSWITCH: the audio stream of {uuid} could not connect: {e}");
                    return;
                }
            };
            let protocol = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|p| p.to_str().ok())
                .map(str::to_string);
            sw.lock().streams.insert(uuid.clone(), AudioStream { url, protocol, frames: 0 });
            if !metadata.is_empty() && ws.send(Message::text(metadata)).await.is_err() {
                return;
            }
            // The callee's voice begins when the script says, on the 20 ms grid.
            let mut progress = progress;
            let mut voice_at = None;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sent = 0usize;
            while sw.is_up(&uuid) {
                tick.tick().await;
                let (begun, done) = *progress.borrow_and_update();
                if voice_at.is_none()
                    && !voice.is_empty()
                    && (if over_first_line { begun } else { done }) >= 1
                {
                    // Over the line: 300 ms into it.
                    voice_at = Some(sent + if over_first_line { 15 } else { 0 });
                }
                let frame: Vec<i16> = match voice_at {
                    Some(at) if sent >= at => {
                        let from = (sent - at) * 160;
                        (from..from + 160).map(|i| voice.get(i).copied().unwrap_or(0)).collect()
                    }
                    _ => vec![0; 160],
                };
                let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
                if ws.send(Message::binary(bytes)).await.is_err() {
                    return;
                }
                sent += 1;
                if let Some(stream) = sw.lock().streams.get_mut(&uuid) {
                    stream.frames = sent;
                }
            }
            let _ = ws.close(None).await;
        });
        "+OK Success\n".into()
    }

    fn is_up(&self, uuid: &str) -> bool {
        self.lock().channels.get(uuid).is_some_and(|c| c.up)
    }

    /// Ends a channel: the recording is closed, CHANNEL_HANGUP_COMPLETE sent, and an
    /// originate still waiting gets `-ERR <job_cause>`; a channel bridged to it is hung up
    /// too.
    fn hang_up(&self, uuid: &str, cause: &str, sip: Option<u16>, job_cause: &str) {
        let (record, answered, job, bridged_to) = {
            let mut s = self.lock();
            let Some(c) = s.channels.get_mut(uuid) else { return };
            if !c.up {
                return;
            }
            c.up = false;
            (c.record.take(), c.answered, c.job.clone(), c.bridged_to.take())
        };
        if let Some(other) = bridged_to {
            let sw = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                sw.hang_up(&other, "NORMAL_CLEARING", Some(200), "NORMAL_CLEARING");
            });
        }
        if let Some(path) = record {
            // FreeSWITCH closes the file before the hangup completes; it creates the
            // directory (switch_ivr_record_session: switch_dir_make_recursive).
            let samples: Vec<i16> = (0..800).map(|i| ((i % 40) as i16 - 20) * 500).collect();
            callcenter::recording::write_wav(&path, &samples).expect("the fake writes its recording");
        }
        let code = sip.map(|c| c.to_string()).unwrap_or_default();
        let proto = sip.map(|c| format!("sip:{c}")).unwrap_or_default();
        let mut headers =
            vec![("Hangup-Cause", cause), ("Answer-State", "hangup"), ("variable_hangup_cause", cause)];
        if sip.is_some() {
            headers.push(("variable_sip_term_status", code.as_str()));
            headers.push(("variable_proto_specific_hangup_cause", proto.as_str()));
        }
        self.channel_event(uuid, "CHANNEL_HANGUP_COMPLETE", &headers);
        if !answered && job.is_some() {
            self.finish_job(uuid, &format!("-ERR {job_cause}\n"));
        }
    }

    /// Sends the originate's BACKGROUND_JOB (once).
    fn finish_job(&self, uuid: &str, result: &str) {
        let (job, arg) = {
            let mut s = self.lock();
            let Some(c) = s.channels.get_mut(uuid) else { return };
            match c.job.take() {
                Some(job) => (job, c.originate_arg.clone()),
                None => return,
            }
        };
        self.job_done(&job, "originate", &arg, result);
    }

    fn job_done(&self, job: &str, cmd: &str, arg: &str, output: &str) {
        let headers = [("Job-UUID", job), ("Job-Command", cmd), ("Job-Command-Arg", arg)];
        self.broadcast("BACKGROUND_JOB", &headers, Some(output));
    }

    /// A channel event: the channel's own headers and variables, then `extra`.
    fn channel_event(&self, uuid: &str, name: &str, extra: &[(&str, &str)]) {
        let (channel_name, phone, caller) = match self.lock().channels.get(uuid) {
            Some(c) => (c.name.clone(), c.phone.clone(), c.caller.clone()),
            None => return,
        };
        let state = if name == "CHANNEL_HANGUP_COMPLETE" { "CS_REPORTING" } else { "CS_EXECUTE" };
        let mut headers = vec![
            ("Channel-State", state),
            ("Channel-Name", channel_name.as_str()),
            ("Unique-ID", uuid),
            ("Call-Direction", "outbound"),
            ("Caller-Destination-Number", phone.as_str()),
            ("Caller-Caller-ID-Name", "客服中心"),
            ("variable_origination_uuid", uuid),
            ("variable_ignore_early_media", "true"),
        ];
        if let Some(caller) = &caller {
            // A call to the server, as the documented dialplan parks it.
            headers.retain(|(k, _)| {
                !["Call-Direction", "variable_origination_uuid", "variable_ignore_early_media"].contains(k)
            });
            headers.extend([
                ("Call-Direction", "inbound"),
                ("Caller-Caller-ID-Number", caller.as_str()),
                ("variable_callcenter_inbound", "true"),
            ]);
        }
        headers.extend_from_slice(extra);
        self.broadcast(name, &headers, None);
    }

    fn event(&self, name: &str, uuid: &str, extra: &[(&str, &str)], body: Option<&str>) {
        let mut headers = vec![("Unique-ID", uuid)];
        headers.extend_from_slice(extra);
        self.broadcast(name, &headers, body);
    }

    /// Serialises an event as `switch_event_serialize` does and sends it to every
    /// connection subscribed to it.
    fn broadcast(&self, name: &str, headers: &[(&str, &str)], body: Option<&str>) {
        let mut text = String::new();
        let common = [
            ("Event-Name", name),
            ("Core-UUID", "6a8e3e6c-9f5e-4a4b-8a35-2f0b1c9d7e11"),
            ("FreeSWITCH-Hostname", "fs-test"),
            ("FreeSWITCH-IPv4", "127.0.0.1"),
            ("Event-Date-Local", "2025-08-16 21:11:59"),
            ("Event-Date-Timestamp", "1755349919000000"),
            ("Event-Calling-File", "switch_channel.c"),
            ("Event-Sequence", "4711"),
        ];
        for (k, v) in common.iter().chain(headers) {
            let v = url_encode(v);
            text.push_str(&format!("{k}: {}\n", if v.is_empty() { "_undef_" } else { &v }));
        }
        match body {
            Some(b) if !b.is_empty() => text.push_str(&format!("Content-Length: {}\n\n{b}", b.len())),
            _ => text.push('\n'),
        }
        let frame = format!("Content-Length: {}\nContent-Type: text/event-plain\n\n{text}", text.len());
        let s = self.lock();
        for conn in s.conns.values() {
            if conn.events.as_ref().is_some_and(|e| e.iter().any(|n| n == name || n == "ALL")) {
                let _ = conn.tx.send(frame.clone().into_bytes());
            }
        }
    }
}

fn reply(text: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `switch_url_encode`: control and non-ASCII bytes and the unsafe characters as `%XX`.
fn url_encode(s: &str) -> String {
    const UNSAFE: &[u8] = b"\r\n \"#%&+:;<=>?@[\\]^`{|}";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if !(b' '..=b'~').contains(&b) || UNSAFE.contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Reads one command: a line, header lines, a blank line (and a `Content-Length` body).
async fn read_command(reader: &mut BufReader<OwnedReadHalf>) -> Option<(String, Vec<(String, String)>)> {
    let mut first: Option<String> = None;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            match first {
                None => continue, // blank lines between commands
                Some(_) => break,
            }
        }
        match &first {
            None => first = Some(line),
            Some(_) => {
                let (k, v) = line.split_once(':').unwrap_or((&line, ""));
                headers.push((k.trim().to_string(), v.trim_start().to_string()));
            }
        }
    }
    if let Some(len) = header(&headers, "Content-Length").and_then(|n| n.parse::<usize>().ok()) {
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await.ok()?;
    }
    Some((first?, headers))
}
