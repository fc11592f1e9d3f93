//! The node's lines (`dialer.max_concurrent_calls`), shared by outbound and inbound calls:
//! outbound calls take at most `max − inbound.reserved_calls` of them, so a big campaign
//! always leaves the reserved ones to callers; an inbound call may take any line free.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub(super) struct Lines {
    /// Every line of the node.
    all: Arc<Semaphore>,
    /// The lines outbound calls may take, besides one of `all`.
    outbound: Arc<Semaphore>,
}

/// One line taken, given back when dropped.
pub(super) struct Line {
    _line: OwnedSemaphorePermit,
    _outbound: Option<OwnedSemaphorePermit>,
}

impl Lines {
    pub(super) fn new(max_calls: u32, reserved_for_inbound: u32) -> Lines {
        let outbound = max_calls.saturating_sub(reserved_for_inbound).max(1);
        Lines {
            all: Arc::new(Semaphore::new(max_calls as usize)),
            outbound: Arc::new(Semaphore::new(outbound as usize)),
        }
    }

    /// Waits for a line an outbound call may take.
    pub(super) async fn outbound(&self) -> Line {
        let outbound = self.outbound.clone().acquire_owned().await.expect("lines are never closed");
        let line = self.all.clone().acquire_owned().await.expect("lines are never closed");
        Line { _line: line, _outbound: Some(outbound) }
    }

    /// A line an outbound call may take, if one is free now.
    pub(super) fn try_outbound(&self) -> Option<Line> {
        let outbound = self.outbound.clone().try_acquire_owned().ok()?;
        let line = self.all.clone().try_acquire_owned().ok()?;
        Some(Line { _line: line, _outbound: Some(outbound) })
    }

    /// Any free line, for an inbound call: callers are never kept waiting for one.
    pub(super) fn try_inbound(&self) -> Option<Line> {
        let line = self.all.clone().try_acquire_owned().ok()?;
        Some(Line { _line: line, _outbound: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_calls_leave_the_reserved_lines_to_inbound_ones() {
        let lines = Lines::new(3, 1);
        let a = lines.try_outbound().unwrap();
        let _b = lines.try_outbound().unwrap();
        assert!(lines.try_outbound().is_none(), "the third line is reserved");
        let inbound = lines.try_inbound().expect("the reserved line takes a caller");
        assert!(lines.try_inbound().is_none(), "every line is taken");
        drop(a);
        assert!(lines.try_inbound().is_some(), "a line an outbound call gave back takes a caller too");
        drop(inbound);
    }

    #[test]
    fn inbound_calls_may_take_the_lines_outbound_calls_would_use() {
        let lines = Lines::new(2, 1);
        let _first = lines.try_inbound().unwrap();
        let _second = lines.try_inbound().unwrap();
        assert!(lines.try_outbound().is_none());
    }
}
