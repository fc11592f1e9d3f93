//! The node's lines (`dialer.max_concurrent_calls`), shared by outbound and inbound calls:
//! outbound calls take at most `max − inbound.reserved_calls` of them, so a big campaign
//! always leaves the reserved ones to callers; an inbound call may take any line free.

use std::sync::Arc;
use std::time::Duration;

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

    /// Any line free within `within`, for an inbound call. A caller waits no longer: the
    /// wait only rides over a line that the dialer holds for a moment while it looks for
    /// due tasks.
    pub(super) async fn inbound(&self, within: Duration) -> Option<Line> {
        let line = tokio::time::timeout(within, self.all.clone().acquire_owned()).await.ok()?;
        Some(Line { _line: line.expect("lines are never closed"), _outbound: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    #[tokio::test]
    async fn outbound_calls_leave_the_reserved_lines_to_inbound_ones() {
        let lines = Lines::new(3, 1);
        let a = lines.try_outbound().unwrap();
        let _b = lines.try_outbound().unwrap();
        assert!(lines.try_outbound().is_none(), "the third line is reserved");
        let inbound = lines.inbound(NOW).await.expect("the reserved line takes a caller");
        assert!(lines.inbound(NOW).await.is_none(), "every line is taken");
        drop(a);
        assert!(lines.inbound(NOW).await.is_some(), "a line an outbound call gave back takes a caller too");
        drop(inbound);
    }

    #[tokio::test]
    async fn inbound_calls_may_take_the_lines_outbound_calls_would_use() {
        let lines = Lines::new(2, 1);
        let _first = lines.inbound(NOW).await.unwrap();
        let _second = lines.inbound(NOW).await.unwrap();
        assert!(lines.try_outbound().is_none());
    }
}
