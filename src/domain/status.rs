use std::fmt;
use std::str::FromStr;

/// `01` inbound, `02` AI outbound, `03` manual outbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallType {
    Inbound,
    AiOutbound,
    ManualOutbound,
}

impl CallType {
    pub fn code(self) -> &'static str {
        match self {
            CallType::Inbound => "01",
            CallType::AiOutbound => "02",
            CallType::ManualOutbound => "03",
        }
    }
}

impl FromStr for CallType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "01" => Ok(CallType::Inbound),
            "02" => Ok(CallType::AiOutbound),
            "03" => Ok(CallType::ManualOutbound),
            _ => Err(()),
        }
    }
}

impl fmt::Display for CallType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where a task stands. Stored by its English name, shown by its Chinese label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// 待呼叫: not called yet.
    Pending,
    /// 呼叫中: a call is in progress.
    Calling,
    /// 等待重呼: an attempt failed, another is due later.
    RetryWait,
    /// 已完成: answered, or out of attempts, or not worth retrying.
    Completed,
    /// 已停止: stopped by stopTasks.
    Stopped,
    /// 已拦截: the number is on the do-not-call list.
    Blocked,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Calling,
        TaskStatus::RetryWait,
        TaskStatus::Completed,
        TaskStatus::Stopped,
        TaskStatus::Blocked,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TaskStatus::Pending => "待呼叫",
            TaskStatus::Calling => "呼叫中",
            TaskStatus::RetryWait => "等待重呼",
            TaskStatus::Completed => "已完成",
            TaskStatus::Stopped => "已停止",
            TaskStatus::Blocked => "已拦截",
        }
    }

    /// The name stored in the database.
    pub fn db_name(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Calling => "calling",
            TaskStatus::RetryWait => "retry_wait",
            TaskStatus::Completed => "completed",
            TaskStatus::Stopped => "stopped",
            TaskStatus::Blocked => "blocked",
        }
    }

    pub fn from_db_name(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.db_name() == s)
    }

    pub fn from_label(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.label() == s)
    }

    /// A task that has ended never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Stopped | TaskStatus::Blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_db_names_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::from_label(s.label()), Some(s));
            assert_eq!(TaskStatus::from_db_name(s.db_name()), Some(s));
        }
    }

    #[test]
    fn call_types_parse_only_the_three_codes() {
        assert_eq!("02".parse::<CallType>(), Ok(CallType::AiOutbound));
        assert!("2".parse::<CallType>().is_err());
        assert!("04".parse::<CallType>().is_err());
    }
}
