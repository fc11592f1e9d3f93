//! RFC 4028 session timers, as the UAC that offers to refresh: a trunk that takes them
//! ends a call whose refreshes stop, so the calls of a node that died without a BYE do
//! not stay up. Refreshes ride on the dialer's lease renewals (`KeepAlive`), so they stop
//! when the node stops renewing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::rsip::{Header, Response};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::HangupCause;
use crate::telephony::KeepAlive;

/// RFC 4028's floor for a session interval, and the Min-SE we send.
pub const MIN_SE: u64 = 90;
/// A refresh is sent only for a keep-alive whose lease renewal is at most this old, so the
/// far end's timer runs out at most `interval + REFRESH_LAG` after the node's last renewal:
/// what the carrier reports to the dialer as its far-end expiry.
pub const REFRESH_LAG: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// A `Session-Expires` value: delta-seconds and the refresher, if named.
pub fn parse_session_expires(value: &str) -> Option<(u64, Option<Refresher>)> {
    let mut parts = value.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let refresher = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
        .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        });
    Some((secs, refresher))
}

pub(super) fn header_value<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|h| h.name().eq_ignore_ascii_case(name)).map(|h| h.value())
}

/// The headers of an INVITE that asks for `secs` with us refreshing.
pub fn invite_headers(secs: u64, min_se: u64) -> Vec<Header> {
    vec![
        Header::Supported("timer".into()),
        Header::SessionExpires(format!("{secs};refresher=uac").into()),
        Header::MinSE(min_se.to_string().into()),
    ]
}

/// The Min-SE of a 422 (Session Interval Too Small).
pub fn min_se_of(response: &Response) -> Option<u64> {
    header_value(response, "Min-SE")?.split(';').next()?.trim().parse().ok()
}

/// What a 2xx settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub interval: Duration,
    pub we_refresh: bool,
    /// The peer's Allow lists UPDATE: refreshes need no SDP.
    pub update: bool,
}

/// What the 2xx to our INVITE says; `None` when the peer does not do session timers.
pub fn negotiated(response: &Response) -> Option<Negotiated> {
    let (secs, refresher) = parse_session_expires(header_value(response, "Session-Expires")?)?;
    let update = response
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("Allow"))
        .flat_map(|h| h.value().split(','))
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"));
    Some(Negotiated {
        interval: Duration::from_secs(secs.max(1)),
        // We offered to refresh; a 2xx that names nobody leaves it with us.
        we_refresh: refresher != Some(Refresher::Uas),
        update,
    })
}

/// The answer to one refresh: its final status and the Session-Expires it carried.
pub type RefreshAnswer = Option<(u16, Option<u64>)>;

/// The dialog's side of a session timer, apart from the schedule so that the schedule
/// can be tested without a network.
#[async_trait]
pub trait Dialog: Send + Sync + 'static {
    /// Sends one refresh (UPDATE without SDP, or a re-INVITE with ours) for `secs`;
    /// `None` when it timed out or could not be sent.
    async fn refresh(&self, update: bool, secs: u64) -> RefreshAnswer;
    /// Ends the call (BYE), recording `cause` as its end.
    async fn end(&self, cause: HangupCause);
    /// Whether the call has already ended.
    fn over(&self) -> bool;
}

/// One call's session timer. Cheap to clone.
#[derive(Clone)]
pub struct SessionTimer(Arc<Inner>);

struct Inner {
    call_id: String,
    dialog: Arc<dyn Dialog>,
    /// `sip.session_expires_secs`: the far-end expiry the dialer's lease counts on.
    configured: Duration,
    we_refresh: bool,
    state: Mutex<State>,
}

struct State {
    interval: Duration,
    /// When the last successful refresh (ours, sent then) or the 2xx was.
    last: Instant,
    update: bool,
    in_flight: bool,
    ended: bool,
}

impl SessionTimer {
    pub fn new(
        call_id: String,
        dialog: Arc<dyn Dialog>,
        negotiated: Negotiated,
        configured: Duration,
        answered_at: Instant,
    ) -> SessionTimer {
        SessionTimer(Arc::new(Inner {
            call_id,
            dialog,
            configured,
            we_refresh: negotiated.we_refresh,
            state: Mutex::new(State {
                interval: negotiated.interval,
                last: answered_at,
                update: negotiated.update,
                in_flight: false,
                ended: false,
            }),
        }))
    }

    pub fn we_refresh(&self) -> bool {
        self.0.we_refresh
    }

    /// The peer refreshed the session (an UPDATE or re-INVITE with Session-Expires).
    pub fn peer_refreshed(&self, secs: u64) {
        let mut s = self.0.state.lock().expect("timer lock");
        s.last = Instant::now();
        s.interval = Duration::from_secs(secs.max(1));
    }

    /// A refresh due now for a keep-alive that lets the call live `for_`: at half the
    /// interval since the last one, and only if the renewal it follows is fresh enough
    /// that the refreshed session does not outlive what the dialer allows.
    fn take_due(&self, now: Instant, for_: Duration) -> Option<(bool, Duration)> {
        let mut s = self.0.state.lock().expect("timer lock");
        let stale = for_ < s.interval.min(self.0.configured);
        if s.in_flight || s.ended || now.duration_since(s.last) < s.interval / 2 || stale {
            return None;
        }
        s.in_flight = true;
        Some((s.update, s.interval))
    }

    async fn refresh(self, sent: Instant, update: bool, interval: Duration) {
        let inner = &self.0;
        let answer = inner.dialog.refresh(update, interval.as_secs()).await;
        let failed = {
            let mut s = inner.state.lock().expect("timer lock");
            s.in_flight = false;
            match answer {
                Some((code, secs)) if (200..300).contains(&code) => {
                    s.last = sent;
                    // A refresh's 2xx may shorten the interval (never below the floor).
                    if let Some(secs) = secs.filter(|&n| n >= MIN_SE && Duration::from_secs(n) < s.interval) {
                        s.interval = Duration::from_secs(secs);
                    }
                    tracing::debug!(call_id = %inner.call_id, update, "sip: session refreshed");
                    None
                }
                Some((405 | 501, _)) if update => {
                    tracing::info!(call_id = %inner.call_id, "sip: UPDATE refused; refreshing by re-INVITE");
                    s.update = false;
                    None
                }
                // RFC 4028 §10: a refresh that times out or finds no dialog ends the call.
                Some((code @ (408 | 481), _)) => Some(code),
                None if !inner.dialog.over() => Some(408),
                None => None,
                Some((code, _)) => {
                    tracing::warn!(call_id = %inner.call_id, code, "sip: session refresh refused; trying again later");
                    None
                }
            }
        };
        if let Some(code) = failed {
            inner.state.lock().expect("timer lock").ended = true;
            tracing::warn!(call_id = %inner.call_id, code, "sip: session refresh failed; hanging up");
            inner.dialog.end(HangupCause::from_sip(code)).await;
        }
    }

    /// When the side that does not refresh gives up: the minimum of 32 s and a third of
    /// the interval before the session expires (RFC 4028 §10).
    fn expires_at(&self) -> Instant {
        let s = self.0.state.lock().expect("timer lock");
        s.last + s.interval - Duration::from_secs(32).min(s.interval / 3)
    }

    /// RFC 4028 §10 for the side that does not refresh: unless a refresh arrives, the call
    /// is ended (BYE) a little before the session would expire. Returns when the call ends.
    pub async fn expire_unless_refreshed(self, mut ended: watch::Receiver<Option<HangupCause>>) {
        loop {
            let at = self.expires_at();
            if Instant::now() >= at {
                tracing::warn!(call_id = %self.0.call_id, "sip: the peer did not refresh the session; hanging up");
                let cause = HangupCause::parse("RECOVERY_ON_TIMER_EXPIRE").expect("a Q.850 name");
                self.0.dialog.end(cause).await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = ended.wait_for(Option::is_some) => return,
            }
        }
    }
}

#[async_trait]
impl KeepAlive for SessionTimer {
    /// Never waits for the network: a refresh runs on its own, so a slow trunk cannot
    /// hold up the dialer's watchdog.
    async fn keep_alive(&self, for_: Duration) {
        if !self.0.we_refresh || self.0.dialog.over() {
            return;
        }
        let now = Instant::now();
        if let Some((update, interval)) = self.take_due(now, for_) {
            tokio::spawn(self.clone().refresh(now, update, interval));
        }
    }
}

/// The session timer's side of a real dialog.
pub struct SipDialog {
    pub dialog: InviteDialog,
    pub local_sdp: String,
    pub ended: watch::Sender<Option<HangupCause>>,
}

#[async_trait]
impl Dialog for SipDialog {
    async fn refresh(&self, update: bool, secs: u64) -> RefreshAnswer {
        let mut headers = vec![
            Header::Supported("timer".into()),
            Header::SessionExpires(format!("{secs};refresher=uac").into()),
        ];
        let sent = if update {
            self.dialog.update(Some(headers), None).await
        } else {
            headers.push(Header::ContentType("application/sdp".into()));
            self.dialog.reinvite(Some(headers), Some(self.local_sdp.clone().into_bytes())).await
        };
        match sent {
            Ok(Some(r)) => {
                let secs =
                    header_value(&r, "Session-Expires").and_then(parse_session_expires).map(|(n, _)| n);
                Some((r.status_code.code(), secs))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "sip: session refresh not sent");
                None
            }
        }
    }

    async fn end(&self, cause: HangupCause) {
        self.ended.send_if_modified(|ended| ended.is_none() && ended.replace(cause).is_none());
        if let Err(e) = self.dialog.bye().await {
            tracing::debug!(error = %e, "sip: BYE");
        }
    }

    fn over(&self) -> bool {
        self.ended.borrow().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refreshes as the peer sees them: (when, by UPDATE) and how the call ended.
    struct FakeDialog {
        start: Instant,
        answer: Mutex<Vec<RefreshAnswer>>,
        refreshes: Mutex<Vec<(Duration, bool)>>,
        ended: Mutex<Option<HangupCause>>,
    }

    #[async_trait]
    impl Dialog for FakeDialog {
        async fn refresh(&self, update: bool, secs: u64) -> RefreshAnswer {
            self.refreshes.lock().unwrap().push((self.start.elapsed(), update));
            self.answer.lock().unwrap().pop().unwrap_or(Some((200, Some(secs))))
        }
        async fn end(&self, cause: HangupCause) {
            self.ended.lock().unwrap().replace(cause);
        }
        fn over(&self) -> bool {
            self.ended.lock().unwrap().is_some()
        }
    }

    fn call(answers: Vec<RefreshAnswer>) -> (Arc<FakeDialog>, SessionTimer) {
        let start = Instant::now();
        let dialog = Arc::new(FakeDialog {
            start,
            answer: Mutex::new(answers),
            refreshes: Mutex::default(),
            ended: Mutex::default(),
        });
        let negotiated = Negotiated { interval: Duration::from_secs(90), we_refresh: true, update: true };
        let timer = SessionTimer::new("c".into(), dialog.clone(), negotiated, Duration::from_secs(90), start);
        (dialog, timer)
    }

    /// The dialer's keep-alives, one after each renewal every 5 s until `until`, on a
    /// clock of our own; each refresh due is run to its end.
    async fn renew_every_5s(
        timer: &SessionTimer,
        start: Instant,
        until: u64,
        total: u64,
    ) -> Vec<(u64, bool)> {
        let mut sent = Vec::new();
        for t in (5..=total).step_by(5) {
            let now = start + Duration::from_secs(t);
            if t > until {
                continue;
            }
            if let Some((update, interval)) = timer.take_due(now, Duration::from_secs(95)) {
                sent.push((t, update));
                timer.clone().refresh(now, update, interval).await;
            }
        }
        sent
    }

    #[tokio::test]
    async fn refreshes_come_at_half_the_interval_and_stop_with_the_renewals() {
        let (dialog, timer) = call(vec![]);
        let sent = renew_every_5s(&timer, dialog.start, 200, 400).await;
        let at: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [45, 90, 135, 180]);
        assert!(sent.iter().all(|(_, update)| *update), "by UPDATE");
        assert_eq!(dialog.refreshes.lock().unwrap().len(), 4);
        // The session the last refresh made ends within the last renewal + the far-end expiry.
        assert!(at[3] + 90 <= 200 + 95);
        assert!(!dialog.over());
    }

    #[tokio::test]
    async fn a_keep_alive_after_an_old_renewal_does_not_refresh() {
        let (dialog, timer) = call(vec![]);
        let now = dialog.start + Duration::from_secs(60);
        // The renewal it follows is 10 s old: a refresh would outlive the lease.
        assert_eq!(timer.take_due(now, Duration::from_secs(85)), None);
        assert_eq!(timer.take_due(now, Duration::from_secs(95)), Some((true, Duration::from_secs(90))));
        // One at a time.
        assert_eq!(timer.take_due(now, Duration::from_secs(95)), None);
    }

    #[tokio::test]
    async fn update_refused_falls_back_to_re_invite_and_a_481_ends_the_call() {
        // Answers are taken from the end: 501 to the first, then 481.
        let (dialog, timer) = call(vec![Some((481, None)), Some((501, None))]);
        let sent = renew_every_5s(&timer, dialog.start, 100, 100).await;
        assert_eq!(sent, [(45, true), (50, false)]);
        let ended = dialog.ended.lock().unwrap().as_ref().map(ToString::to_string);
        assert_eq!(ended.as_deref(), Some("NORMAL_TEMPORARY_FAILURE:sip:481"));
    }

    #[tokio::test]
    async fn the_side_that_does_not_refresh_gives_up_before_the_session_expires() {
        let (dialog, _) = call(vec![]);
        let negotiated = Negotiated { interval: Duration::from_secs(90), we_refresh: false, update: true };
        let timer =
            SessionTimer::new("c".into(), dialog.clone(), negotiated, Duration::from_secs(90), dialog.start);
        assert_eq!(timer.expires_at(), dialog.start + Duration::from_secs(60));
        timer.peer_refreshed(120);
        assert!(timer.expires_at() >= dialog.start + Duration::from_secs(88));
    }

    #[test]
    fn session_expires_values_are_read() {
        assert_eq!(parse_session_expires("90;refresher=uac"), Some((90, Some(Refresher::Uac))));
        assert_eq!(parse_session_expires(" 1800 ; refresher = UAS"), Some((1800, Some(Refresher::Uas))));
        assert_eq!(parse_session_expires("120"), Some((120, None)));
        assert_eq!(parse_session_expires("soon"), None);
    }
}
