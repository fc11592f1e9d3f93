//! The `[transfer]` section: where a call the agent hands to a person goes, and how long
//! that person's phone may ring.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[transfer]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferSettings {
    /// How long the human's phone rings before the agent gives up and tells the callee
    /// someone will call back.
    pub ring_timeout_secs: u64,
    /// Where transfers go when the task's `ticketType` has no destination of its own: a
    /// SIP URI (`sip:8001@pbx.example.com`) or an extension/number dialled through the
    /// carrier's routes (`8001`); empty = no transfers (the agent says someone will call
    /// back and the call ends with intent 转人工).
    pub default_to: String,
    /// Destinations by the task's `ticketType` (`"报修" = "8001"`), before `default_to`.
    pub by_ticket_type: BTreeMap<String, String>,
}

impl Default for TransferSettings {
    fn default() -> Self {
        TransferSettings { ring_timeout_secs: 30, default_to: String::new(), by_ticket_type: BTreeMap::new() }
    }
}

/// Whether `to` can be a transfer's destination: a SIP URI (`sip:8001@pbx.example.com`),
/// an extension or number (`8001`), or a FreeSWITCH dial string (`user/8001`). One word,
/// with nothing that would end a FreeSWITCH originate's target or its variables.
pub fn is_destination(to: &str) -> bool {
    !to.is_empty()
        && to.len() <= 200
        && !to.chars().any(|c| c.is_whitespace() || c.is_control() || "{}'\"".contains(c))
}

/// A caller id a campaign may send: 1…32 of the characters FreeSWITCH's and SIP's caller
/// ids take as they are (digits, letters, `+ * # . _ -`).
pub fn is_caller_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "+*#._-".contains(c))
}

impl TransferSettings {
    /// The destination of a transfer from a call about `ticket_type`, if any.
    pub fn destination(&self, ticket_type: &str) -> Option<String> {
        let to = self.by_ticket_type.get(ticket_type).unwrap_or(&self.default_to);
        (!to.trim().is_empty()).then(|| to.trim().to_string())
    }

    /// What the types do not check.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=300).contains(&self.ring_timeout_secs) {
            return Err("transfer.ring_timeout_secs must be 1…300".into());
        }
        let named = std::iter::once(("transfer.default_to".to_string(), &self.default_to))
            .chain(self.by_ticket_type.iter().map(|(t, to)| (format!("transfer.by_ticket_type.{t}"), to)));
        for (key, to) in named {
            if !to.trim().is_empty() && !is_destination(to.trim()) {
                return Err(format!("{key} `{to}` is neither a SIP URI nor a number"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_type_picks_the_destination_before_the_default() {
        let mut s = TransferSettings::default();
        assert_eq!(s.destination("报修"), None);
        s.default_to = "8000".into();
        s.by_ticket_type.insert("报修".into(), "sip:8001@pbx.example.com".into());
        assert_eq!(s.destination("报修").as_deref(), Some("sip:8001@pbx.example.com"));
        assert_eq!(s.destination("投诉").as_deref(), Some("8000"));
        assert_eq!(s.validate(), Ok(()));
        s.ring_timeout_secs = 0;
        assert!(s.validate().unwrap_err().contains("transfer.ring_timeout_secs"));
    }
}
