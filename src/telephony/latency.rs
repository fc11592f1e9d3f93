//! Voice-to-voice latency: for every answer of the agent's, the time from the callee's last
//! word to the answer's first audio, in its parts (a histogram each on /metrics) and as
//! the call's median (in `CallEnd`, and from there in the `call.ended` webhook).

use std::time::Duration;

use tokio::time::Instant;

/// When the callee's turn ended, in the steps from their last word to the text.
#[derive(Debug, Clone, Copy)]
pub struct TurnTimes {
    /// Their last loud frame.
    pub speech_end: Instant,
    /// The quiet that ends a turn has passed.
    pub turn_end: Instant,
    /// The recogniser gave the text.
    pub recognised: Instant,
}

impl TurnTimes {
    /// A turn known only by when it was heard whole (a carrier without the steps).
    pub fn at(heard: Instant) -> TurnTimes {
        TurnTimes { speech_end: heard, turn_end: heard, recognised: heard }
    }
}

/// The answered turns of one call.
#[derive(Debug, Default)]
pub struct CallLatency {
    /// The callee's last turn, until the agent's answer to it goes out.
    unanswered: Option<TurnTimes>,
    /// Each answer's total, voice to voice.
    totals: Vec<Duration>,
}

impl CallLatency {
    /// The callee finished a turn; the agent's next line answers it.
    pub fn heard(&mut self, turn: TurnTimes) {
        self.unanswered = Some(turn);
    }

    /// The agent began a line: whether it answers a turn (the call's first line answers
    /// none). Taken by `answered`, or dropped if the line never went out.
    pub fn answering(&mut self) -> Option<TurnTimes> {
        self.unanswered.take()
    }

    /// The answer to `turn` went out: the agent asked to say it at `asked`, its first audio
    /// came at `synthesized` (the rest streams while it plays), and its first packet was
    /// sent at `sent`. Records each part.
    pub fn answered(&mut self, turn: TurnTimes, asked: Instant, synthesized: Instant, sent: Instant) {
        let parts = [
            ("end_of_turn", turn.speech_end, turn.turn_end),
            ("recognition", turn.turn_end, turn.recognised),
            ("agent", turn.recognised, asked),
            ("synthesis", asked, synthesized),
            ("sending", synthesized, sent),
            ("total", turn.speech_end, sent),
        ];
        for (part, from, to) in parts {
            crate::metrics::turn_latency(part, to.saturating_duration_since(from));
        }
        self.totals.push(sent.saturating_duration_since(turn.speech_end));
    }

    /// The median total (the lower middle of an even count); `None` with no answer.
    pub fn median(&self) -> Option<Duration> {
        let mut totals = self.totals.clone();
        totals.sort_unstable();
        totals.get(totals.len().checked_sub(1)? / 2).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_over_the_answers_and_a_line_answering_nothing_counts_not() {
        let mut call = CallLatency::default();
        assert_eq!(call.answering().map(|_| ()), None, "the greeting answers no turn");
        assert_eq!(call.median(), None);
        let t0 = Instant::now();
        for ms in [900, 300, 600, 1200] {
            let turn = TurnTimes::at(t0);
            call.heard(turn);
            let turn = call.answering().expect("the line answers the turn");
            let sent = t0 + Duration::from_millis(ms);
            call.answered(turn, t0, t0, sent);
            assert!(call.answering().is_none(), "a turn is answered once");
        }
        assert_eq!(call.median(), Some(Duration::from_millis(600)));
    }
}
