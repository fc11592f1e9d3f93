//! The worker that turns tasks into calls.

use std::sync::Arc;

use tokio::sync::Notify;

/// How the API nudges the dialer in this process.
#[derive(Clone, Default)]
pub struct DialerSignals {
    /// Tasks were created: look for due work now.
    pub wake: Arc<Notify>,
    /// Tasks with calls in progress were stopped: hang them up now.
    pub stop_check: Arc<Notify>,
}
