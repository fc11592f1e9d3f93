//! The conversation: an `Agent` drives one answered call through its `CallSession`.
//! The script agent is the default; an LLM agent fits behind the same trait.

pub mod llm;
pub mod script;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Turn;
use crate::telephony::{CallSession, HungUp, TransferFailed, extension_of};
use llm::LlmSettings;
use script::{ScriptLines, ScriptSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    Script,
    Llm,
}

/// The `[agent]` section: which agent talks (`kind`), and each agent's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    pub kind: AgentKind,
    /// Whether the callee may speak over the agent: the line stops, the dialogue keeps
    /// what they heard of it, and their words are heard and answered.
    pub barge_in: bool,
    /// How long the callee must speak over a line to stop it, so that a cough or a click
    /// on the line does not.
    pub barge_in_min_speech_ms: u64,
    pub script: ScriptSettings,
    pub llm: LlmSettings,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            kind: AgentKind::Script,
            barge_in: true,
            barge_in_min_speech_ms: 300,
            script: ScriptSettings::default(),
            llm: LlmSettings::default(),
        }
    }
}

impl AgentSettings {
    /// The speech that stops a line, when barge-in is on.
    pub fn barge_in(&self) -> Option<Duration> {
        self.barge_in.then(|| Duration::from_millis(self.barge_in_min_speech_ms))
    }
}

/// What the agent knows of the task it calls for.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub batch_id: i64,
    pub ticket_no: String,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    /// The words the task's campaign, or the inbound number called, gives the agent
    /// instead of the `[agent]` section's.
    pub overrides: std::sync::Arc<AgentOverrides>,
    /// Where a transfer to a person goes (a SIP URI, or an extension/number the carrier
    /// dials), already resolved for this call; `None`: nobody to transfer to, the callee
    /// is told someone will call back.
    pub transfer_to: Option<String>,
    /// How long the person's phone may ring (`transfer.ring_timeout_secs`).
    pub transfer_ring_timeout: Duration,
}

/// A campaign's own words for the agent: script lines (those it does not name stay as
/// configured) or the language model's system prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOverrides {
    pub script: ScriptLines,
    pub system_prompt: Option<String>,
}

impl TaskContext {
    /// Replaces `{username}`, `{ticketType}` and `{ticketContent}` in one pass, so text in
    /// a ticket that looks like a placeholder stays as written.
    pub fn fill(&self, template: &str) -> String {
        let fields = [
            ("{username}", self.username.as_str()),
            ("{ticketType}", self.ticket_type.as_str()),
            ("{ticketContent}", self.ticket_content.as_str()),
        ];
        let mut out = String::with_capacity(template.len() + self.ticket_content.len());
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            match fields.iter().find(|(key, _)| rest.starts_with(key)) {
                Some((key, value)) => {
                    out.push_str(value);
                    rest = &rest[key.len()..];
                }
                None => {
                    out.push('{');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// What the callee's answer amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Confirmed,
    Question,
    Refused,
    /// They asked for a person.
    Human,
    /// Nothing heard, or nothing we recognise (e.g. `[语音 3秒]` without a recogniser).
    Unclear,
}

/// Sorts a reply by keywords. A request for a person wins (`能转人工吗` is a question, but
/// what it asks for is a person), then a question (it needs an answer whatever else was
/// said), then a refusal (`不行` and `不知道` contain confirming words), then a confirmation.
pub fn classify(text: &str) -> Reply {
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["人工", "真人", "客服人员"]) {
        Reply::Human
    } else if has(&["？", "?", "什么", "怎么", "哪", "吗"]) {
        Reply::Question
    } else if has(&["不", "没空", "别", "拒绝"]) {
        Reply::Refused
    } else if has(&["好", "可以", "知道", "明白", "确认", "行", "嗯"]) {
        Reply::Confirmed
    } else {
        Reply::Unclear
    }
}

/// The outcomes of an answered call, as records/list and webhooks show them.
pub const CONFIRMED: &str = "已确认";
pub const REFUSED: &str = "拒绝";
pub const CALL_BACK: &str = "需回访";
pub const NO_RESPONSE: &str = "无效";
pub const TRANSFER: &str = "转人工";

/// The outcome of an answered call by rules: a request for a person wins (the call was
/// handed over, or someone must call back), then a refusal anywhere, then a question
/// (someone must call back), then a confirmation; a callee who said nothing we
/// understood is 无效.
pub fn intent_by_rules(dialogue: &[Turn]) -> &'static str {
    let replies: Vec<Reply> = dialogue
        .iter()
        .filter(|t| t.role == crate::domain::Role::User)
        .map(|t| classify(&t.content))
        .collect();
    if replies.contains(&Reply::Human) {
        TRANSFER
    } else if replies.contains(&Reply::Refused) {
        REFUSED
    } else if replies.contains(&Reply::Question) {
        CALL_BACK
    } else if replies.contains(&Reply::Confirmed) {
        CONFIRMED
    } else {
        NO_RESPONSE
    }
}

/// The turn that ends the dialogue of a call handed to a person: `[转人工 8001]`.
pub fn transfer_turn(to: &str) -> Turn {
    Turn::assistant(format!("[{TRANSFER} {}]", extension_of(to)))
}

/// Hands the call to the person the task names, once the agent has said its line:
/// `Ok(true)` when they answered and the callee is bridged to them (the dialogue then
/// ends with `transfer_turn`, and the agent's part is over); `Ok(false)` when there is
/// nobody to transfer to or they did not answer (busy, no answer within the ring
/// timeout): the agent tells the callee someone will call back.
pub async fn hand_over(
    task: &TaskContext,
    call: &mut dyn CallSession,
    dialogue: &mut Vec<Turn>,
) -> Result<bool, HungUp> {
    let Some(to) = task.transfer_to.as_deref() else { return Ok(false) };
    match call.transfer(to, task.transfer_ring_timeout).await {
        Ok(_) => {
            dialogue.push(transfer_turn(to));
            Ok(true)
        }
        Err(TransferFailed::CalleeGone(cause)) => Err(HungUp(cause)),
        Err(why) => {
            tracing::info!(
                batch_id = task.batch_id,
                to = extension_of(to),
                ?why,
                "transfer not answered; the callee is told someone will call back"
            );
            Ok(false)
        }
    }
}

#[async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Converses until the agent is done (`Ok`) or the callee hangs up (`Err`).
    /// Every line is pushed to `dialogue` as it is spoken or heard, so a call cut short
    /// (stopTasks, max call time) keeps what was said.
    async fn converse(
        &self,
        task: &TaskContext,
        call: &mut dyn CallSession,
        dialogue: &mut Vec<Turn>,
    ) -> Result<(), HungUp>;

    /// The outcome of an answered call (e.g. 已确认, 拒绝, 需回访, 无效), decided once it
    /// has ended. By default by rules on what the callee said.
    async fn intent(&self, _task: &TaskContext, dialogue: &[Turn]) -> String {
        intent_by_rules(dialogue).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_follows_what_the_callee_said() {
        let said = |lines: &[&str]| {
            let mut d = vec![Turn::assistant("您好")];
            d.extend(lines.iter().map(|l| Turn::user(*l)));
            intent_by_rules(&d)
        };
        assert_eq!(said(&["好的，我知道了"]), CONFIRMED);
        assert_eq!(said(&["请问具体是什么时间？"]), CALL_BACK);
        assert_eq!(said(&["嗯", "不需要，谢谢"]), REFUSED);
        assert_eq!(said(&[]), NO_RESPONSE);
        assert_eq!(said(&["[语音 3秒]"]), NO_RESPONSE);
        assert_eq!(said(&["不要机器人，能转人工吗？"]), TRANSFER);
    }
}
