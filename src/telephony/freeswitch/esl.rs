//! The wire format of FreeSWITCH's event socket (mod_event_socket), as its source and
//! documentation describe it.
//!
//! Everything FreeSWITCH sends is a *frame*: header lines `Name: value`, a blank line, and
//! then exactly `Content-Length` bytes of body when that header is present:
//!
//! ```text
//! Content-Type: auth/request                      (on connect)
//!
//! Content-Type: command/reply                     (auth, event, bgapi, sendmsg …)
//! Reply-Text: +OK accepted
//!
//! Content-Type: api/response                      (api …)
//! Content-Length: 4
//!
//! +OK
//! Content-Length: 512                             (a subscribed event)
//! Content-Type: text/event-plain
//!
//! Event-Name: CHANNEL_ANSWER
//! Unique-ID: 2508162111590110001
//! Event-Date-Local: 2025-08-16%2021%3A11%3A59
//! …
//! ```
//!
//! A `text/event-plain` body is itself a header block whose values are URL-encoded
//! (`switch_event_serialize`), ending in a blank line, or in `Content-Length: N`, a blank
//! line and the event's own body (a `BACKGROUND_JOB`'s result, a `DETECTED_SPEECH`'s text).
//!
//! Commands go the other way as a line, optional header lines, and a blank line.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Larger frames are refused as garbage (mod_event_socket caps what it reads at 10 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One frame as received: its header lines in order, and its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    pub fn content_type(&self) -> &str {
        self.header("Content-Type").unwrap_or("")
    }

    /// What a reply says: `Reply-Text` of a `command/reply`, the body of an `api/response`.
    pub fn reply_text(&self) -> String {
        match self.header("Reply-Text") {
            Some(text) => text.to_string(),
            None => String::from_utf8_lossy(&self.body).trim_end().to_string(),
        }
    }
}

/// A frame that is not what the protocol allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed event socket frame: {0}")]
    Malformed(String),
    #[error("event socket frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
}

impl From<WireError> for io::Error {
    fn from(e: WireError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Cuts frames out of a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        // Blank lines between frames are skipped, as mod_event_socket does.
        let blank = self.buf.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
        self.buf.advance(blank);
        let Some((head_len, skip)) = header_end(&self.buf) else {
            if self.buf.len() > MAX_FRAME {
                return Err(WireError::TooLarge(self.buf.len()));
            }
            return Ok(None);
        };
        let headers = parse_lines(&self.buf[..head_len], false)?;
        let body_len = match find(&headers, "Content-Length") {
            None => 0,
            Some(n) => n
                .trim()
                .parse::<usize>()
                .map_err(|_| WireError::Malformed(format!("Content-Length `{n}` is not a number")))?,
        };
        if body_len > MAX_FRAME {
            return Err(WireError::TooLarge(body_len));
        }
        let total = head_len + skip + body_len;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let frame = self.buf.split_to(total);
        Ok(Some(Frame { headers, body: frame[head_len + skip..].to_vec() }))
    }
}

/// Where the header block ends: its length, and the length of the blank line after it.
/// A line may end in `\r\n` as well as `\n`.
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let mut j = nl + 1;
        if buf.get(j) == Some(&b'\r') {
            j += 1;
        }
        match buf.get(j) {
            Some(b'\n') => return Some((nl, j + 1 - nl)),
            Some(_) => i = nl + 1,
            None => return None,
        }
    }
    None
}

/// `Name: value` lines; values URL-decoded when `decode` (event bodies), else raw.
fn parse_lines(block: &[u8], decode: bool) -> Result<Vec<(String, String)>, WireError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| WireError::Malformed("header block is not UTF-8".to_string()))?;
    let mut headers = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(WireError::Malformed(format!("header line without a colon: `{line}`")));
        };
        let value = value.trim_start_matches(' ');
        let value = if decode { url_decode(value) } else { value.to_string() };
        headers.push((name.trim().to_string(), value));
    }
    Ok(headers)
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes (FreeSWITCH's `switch_url_encode` writes spaces as `%20`, so a
/// `+` is a plus). Bytes that do not form an escape are kept; the result is read as UTF-8.
pub fn url_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One event from a `text/event-plain` frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub headers: Vec<(String, String)>,
    /// The event's own body, when it has one.
    pub body: Option<String>,
}

impl Event {
    /// Parses the body of a `text/event-plain` frame.
    pub fn parse_plain(data: &[u8]) -> Result<Event, WireError> {
        let (block, rest) = match header_end(data) {
            Some((len, skip)) => (&data[..len], &data[len + skip..]),
            // The trailing blank line is missing: take it all as headers.
            None => (data, &data[data.len()..]),
        };
        let mut headers = parse_lines(block, true)?;
        let body = match headers.iter().position(|(n, _)| n.eq_ignore_ascii_case("Content-Length")) {
            None => None,
            Some(i) => {
                let (_, n) = headers.remove(i);
                let n: usize = n.trim().parse().map_err(|_| {
                    WireError::Malformed(format!("event Content-Length `{n}` is not a number"))
                })?;
                let body = &rest[..n.min(rest.len())];
                Some(String::from_utf8_lossy(body).into_owned())
            }
        };
        Ok(Event { headers, body })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// `Event-Name`, e.g. `CHANNEL_ANSWER`.
    pub fn name(&self) -> &str {
        self.header("Event-Name").unwrap_or("")
    }

    /// The channel (`Unique-ID`) the event is about, if any.
    pub fn unique_id(&self) -> Option<&str> {
        self.header("Unique-ID")
    }
}

/// Encodes a command: its line, header lines, and the blank line that ends it. A line
/// break inside would end the command early, so none may be there.
pub fn command(line: &str, headers: &[(&str, &str)]) -> Result<Vec<u8>, WireError> {
    let mut out = String::with_capacity(line.len() + 2);
    let breaks = |s: &str| s.contains(['\n', '\r']);
    if breaks(line) {
        return Err(WireError::Malformed("a command line may not contain a line break".into()));
    }
    out.push_str(line);
    out.push('\n');
    for (name, value) in headers {
        if breaks(name) || breaks(value) || name.contains(':') {
            return Err(WireError::Malformed(format!("bad command header `{name}`")));
        }
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
    Ok(out.into_bytes())
}

/// Reads frames from a socket. `next` is cancel-safe: bytes already read stay buffered.
pub struct FrameReader<R> {
    io: R,
    decoder: Decoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> FrameReader<R> {
        FrameReader { io, decoder: Decoder::default() }
    }

    /// The next frame; `None` when the peer closed the connection between frames.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 8192];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return if self.decoder.buf.iter().all(|b| b.is_ascii_whitespace()) {
                    Ok(None)
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a frame"))
                };
            }
            self.decoder.extend(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(wire: &[u8]) -> Vec<Frame> {
        let mut d = Decoder::default();
        d.extend(wire);
        std::iter::from_fn(|| d.next_frame().unwrap()).collect()
    }

    #[test]
    fn a_frame_without_body_ends_at_the_blank_line() {
        let f = frames(b"Content-Type: auth/request\n\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].content_type(), "auth/request");
        assert!(f[0].body.is_empty());
    }

    #[test]
    fn a_command_reply_carries_its_reply_text_verbatim() {
        let f = frames(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: 7f4d\nJob-UUID: 7f4d\n\n");
        assert_eq!(f[0].reply_text(), "+OK Job-UUID: 7f4d");
        assert_eq!(f[0].header("job-uuid"), Some("7f4d"), "names are case-insensitive");
    }

    #[test]
    fn the_body_is_exactly_content_length_bytes_even_with_multibyte_text() {
        let body = "+OK 已接受\n";
        let wire = format!(
            "Content-Type: api/response\nContent-Length: {}\n\n{body}Content-Type: command/reply\nReply-Text: +OK\n\n",
            body.len()
        );
        let f = frames(wire.as_bytes());
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].body, body.as_bytes());
        assert_eq!(f[0].reply_text(), "+OK 已接受");
        assert_eq!(f[1].reply_text(), "+OK");
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let event = "Event-Name: CHANNEL_ANSWER\nUnique-ID: 2508162111590110001\n\n";
        let wire = format!(
            "Content-Type: command/reply\nReply-Text: +OK accepted\n\nContent-Length: {}\nContent-Type: text/event-plain\n\n{event}",
            event.len()
        );
        let whole = frames(wire.as_bytes());
        for cut in 0..wire.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in [&wire.as_bytes()[..cut], &wire.as_bytes()[cut..]] {
                d.extend(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn crlf_line_ends_and_blank_lines_between_frames_are_accepted() {
        let f = frames(b"\n\r\nContent-Type: command/reply\r\nReply-Text: +OK\r\n\r\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].reply_text(), "+OK");
    }

    #[test]
    fn a_bad_content_length_or_a_huge_one_is_an_error() {
        let mut d = Decoder::default();
        d.extend(b"Content-Type: api/response\nContent-Length: lots\n\n");
        assert!(matches!(d.next_frame(), Err(WireError::Malformed(_))));
        let mut d = Decoder::default();
        d.extend(format!("Content-Length: {}\n\n", MAX_FRAME + 1).as_bytes());
        assert_eq!(d.next_frame(), Err(WireError::TooLarge(MAX_FRAME + 1)));
        let mut d = Decoder::default();
        d.extend(b"no colon here\n\n");
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn event_values_are_url_decoded() {
        let e = Event::parse_plain(
            b"Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: 2508162111590110001\n\
              Event-Date-Local: 2025-08-16%2021%3A11%3A59\nHangup-Cause: USER_BUSY\n\
              variable_proto_specific_hangup_cause: sip%3A486\nCaller-Caller-ID-Name: %E5%BC%A0%E4%B8%89\n\
              variable_raw: 100%25+sure\n\n",
        )
        .unwrap();
        assert_eq!(e.name(), "CHANNEL_HANGUP_COMPLETE");
        assert_eq!(e.unique_id(), Some("2508162111590110001"));
        assert_eq!(e.header("Event-Date-Local"), Some("2025-08-16 21:11:59"));
        assert_eq!(e.header("variable_proto_specific_hangup_cause"), Some("sip:486"));
        assert_eq!(e.header("Caller-Caller-ID-Name"), Some("张三"));
        assert_eq!(e.header("variable_raw"), Some("100%+sure"), "a plus stays a plus");
        assert_eq!(e.body, None);
    }

    #[test]
    fn an_event_with_a_body_carries_it_after_its_own_content_length() {
        let job = "-ERR USER_BUSY\n";
        let data = format!(
            "Event-Name: BACKGROUND_JOB\nJob-UUID: 2508162111590110001\nJob-Command: originate\nContent-Length: {}\n\n{job}",
            job.len()
        );
        let e = Event::parse_plain(data.as_bytes()).unwrap();
        assert_eq!(e.name(), "BACKGROUND_JOB");
        assert_eq!(e.header("Job-UUID"), Some("2508162111590110001"));
        assert_eq!(e.body.as_deref(), Some(job));
        assert_eq!(e.header("Content-Length"), None, "the body's length is not a header of the event");
    }

    #[test]
    fn malformed_escapes_are_kept_as_written() {
        assert_eq!(url_decode("50%"), "50%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("a%20b"), "a b");
    }

    #[test]
    fn commands_end_in_a_blank_line_and_refuse_line_breaks() {
        assert_eq!(command("auth ClueCon", &[]).unwrap(), b"auth ClueCon\n\n");
        assert_eq!(
            command("bgapi originate x", &[("Job-UUID", "j1")]).unwrap(),
            b"bgapi originate x\nJob-UUID: j1\n\n"
        );
        assert!(command("api uuid_kill x\n\nexit", &[]).is_err());
        assert!(command("sendmsg x", &[("execute-app-arg", "a\nb")]).is_err());
    }

    #[tokio::test]
    async fn the_reader_reads_frames_and_reports_a_clean_close() {
        let wire: &[u8] =
            b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n";
        let mut r = FrameReader::new(wire);
        assert_eq!(r.next().await.unwrap().unwrap().content_type(), "auth/request");
        assert_eq!(r.next().await.unwrap().unwrap().reply_text(), "+OK accepted");
        assert!(r.next().await.unwrap().is_none());

        let cut: &[u8] = b"Content-Type: api/response\nContent-Length: 10\n\n+OK";
        assert!(FrameReader::new(cut).next().await.is_err(), "closed inside a frame");
    }
}
