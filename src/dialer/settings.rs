//! The `[dialer]` section.

use serde::{Deserialize, Serialize};

use super::CallingHours;
use crate::telephony::CarrierKind;

/// The `[dialer]` section: whether and how fast this node calls, and how often a task is tried.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialerSettings {
    pub enabled: bool,
    pub node_id: NodeId,
    pub carrier: CarrierKind,
    pub max_concurrent_calls: u32,
    pub calls_per_second: u32,
    pub calling_hours: CallingHours,
    pub max_attempts: u32,
    pub retry_delay_secs: u64,
    pub ring_timeout_secs: u64,
    pub max_call_secs: u64,
    pub shutdown_grace_secs: u64,
    /// Most calls one number may get per day, over all its tasks (0 = no cap).
    pub max_calls_per_number_per_day: u32,
}

impl Default for DialerSettings {
    fn default() -> Self {
        DialerSettings {
            enabled: true,
            node_id: NodeId("01".into()),
            carrier: CarrierKind::Sim,
            max_concurrent_calls: 30,
            calls_per_second: 5,
            calling_hours: CallingHours::ALWAYS,
            max_attempts: 3,
            retry_delay_secs: 600,
            ring_timeout_secs: 45,
            max_call_secs: 300,
            shutdown_grace_secs: 30,
            max_calls_per_number_per_day: 0,
        }
    }
}

/// Two digits that go into every call uuid; distinct per node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(pub String);

impl TryFrom<String> for NodeId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(NodeId(s))
        } else {
            Err(format!("node_id must be two digits such as \"01\", got `{s}`"))
        }
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}
