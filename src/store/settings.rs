//! The `[database]` section.

use serde::{Deserialize, Serialize};

/// The `[database]` section: `sqlite://FILE` or `postgres://…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: String,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings { url: "sqlite://data/callcenter.db".into() }
    }
}
