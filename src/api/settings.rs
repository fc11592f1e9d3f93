//! The API's own sections: `[api]` and `[auth]`.

use serde::{Deserialize, Serialize};

use crate::recording::RecordingSettings;

/// The `[api]` section: limits on requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub max_tasks_per_request: usize,
    pub max_body_bytes: usize,
    /// A request still running after this long is answered with code 500 (HTTP 503).
    pub request_timeout_secs: u64,
    /// Requests served at once; more are refused at once with HTTP 503 (code 500).
    pub max_concurrent_requests: usize,
    /// A request body not wholly received this long after its head is answered with
    /// HTTP 408 (code 408) and its connection closed.
    pub body_read_timeout_secs: u64,
    /// Whether a ticket's unknown batchName creates its campaign (with the global
    /// settings); when false it is refused (code 405) and campaigns are made with
    /// campaign/save only.
    pub auto_create_campaigns: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_tasks_per_request: 1000,
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 1024,
            body_read_timeout_secs: 10,
            auto_create_campaigns: true,
        }
    }
}

/// API keys. Empty: the API is open (fine on loopback; warned about elsewhere).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub api_keys: Vec<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthSettings {{ api_keys: [{} hidden] }}", self.api_keys.len())
    }
}

/// What the API reads of the settings: its own sections, and the values of others that it
/// shows or obeys.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    pub api: ApiSettings,
    pub auth: AuthSettings,
    /// `server.public_url`: the prefix of `wavFileUrl`.
    pub public_url: String,
    /// `server.cors_origins`.
    pub cors_origins: Vec<String>,
    /// Where recordings are served from, and when readiness fails on them.
    pub recordings: RecordingSettings,
    /// `dialer.enabled`: whether readiness expects a running dialer.
    pub dialer_enabled: bool,
}
