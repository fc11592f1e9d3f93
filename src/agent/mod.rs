//! The conversation: an `Agent` drives one answered call through its `CallSession`.
//! The script agent is the default; an LLM agent fits behind the same trait.

pub mod script;

use async_trait::async_trait;

use crate::domain::Turn;
use crate::telephony::{CallSession, HungUp};

/// What the agent knows of the task it calls for.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub batch_id: i64,
    pub ticket_no: String,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
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
}

/// The agent that `agent.kind` names.
pub fn agent(settings: &crate::config::Settings) -> std::sync::Arc<dyn Agent> {
    match settings.agent.kind {
        crate::config::AgentKind::Script => {
            std::sync::Arc::new(script::ScriptAgent::new(&settings.agent.script))
        }
    }
}
