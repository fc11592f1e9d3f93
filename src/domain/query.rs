use super::{CallType, TaskStatus};

/// 1-based page number and size (1…1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub num: u32,
    pub size: u32,
}

impl Page {
    pub const MAX_SIZE: u32 = 1000;

    pub fn offset(&self) -> i64 {
        (self.num as i64 - 1) * self.size as i64
    }
}

/// records/list, parsed. Time bounds are epoch ms, `from` inclusive, `until` exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFilter {
    pub call_type: CallType,
    pub uuid: Option<String>,
    pub telephone: Option<String>,
    pub extnum: Option<String>,
    pub callout_from_ms: Option<i64>,
    pub callout_until_ms: Option<i64>,
    pub time_len_min: Option<i64>,
    pub time_len_max: Option<i64>,
    /// Only the AI calls of this campaign.
    pub batch_name: Option<String>,
    pub page: Page,
}

/// calltask/list, parsed. Time bounds are epoch ms, `from` inclusive, `until` exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    pub batch_id: Option<i64>,
    pub created_from_ms: Option<i64>,
    pub created_until_ms: Option<i64>,
    pub ticket_no: Option<String>,
    pub phone: Option<String>,
    pub status: Option<TaskStatus>,
    /// Only the tasks of this campaign.
    pub batch_name: Option<String>,
    pub page: Page,
}
