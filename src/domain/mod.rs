//! Types that parse, don't validate: once built, a value is known good.

mod call_id;
mod hangup;
mod phone;
mod query;
mod status;
mod time;

pub use call_id::CallIdGenerator;
pub use hangup::{HangupCause, OUTCOME_CLASSES, OUTCOME_OF_CAUSE, outcome_class};
pub use phone::Phone;
pub use query::{Page, RecordFilter, TaskFilter};
pub use status::{CallType, TaskStatus};
pub use time::{ApiTime, OutOfRange, Timezone, check_call_time, now_ms};

use serde::{Deserialize, Serialize};

/// One ticket handed to createTasks, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub ticket_no: String,
    pub phone: Phone,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    /// The task's campaign (the ticket's batchName, or `DEFAULT_CAMPAIGN`).
    pub batch_name: String,
}

/// The campaign of tasks created without a batchName, and of every task from before
/// campaigns existed.
pub const DEFAULT_CAMPAIGN: &str = "default";

/// Who spoke a line of a call's dialogue. A system prompt is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Assistant,
    User,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

impl Turn {
    pub fn assistant(content: impl Into<String>) -> Turn {
        Turn { role: Role::Assistant, content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Turn {
        Turn { role: Role::User, content: content.into() }
    }
}
