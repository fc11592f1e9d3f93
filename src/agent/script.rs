//! The script agent: reads the ticket out, asks for confirmation, and reacts to the
//! answer with one of the configured lines. No speech model needed; the callee's reply
//! is sorted by keywords, or by the key they pressed (`keys`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Agent, CALL_BACK, CONFIRMED, REFUSED, Reply, TRANSFER, TaskContext, classify, hand_over, intent_by_rules,
};
use crate::domain::{Role, Turn};
use crate::telephony::{CallSession, Heard, HungUp, Said, dtmf};

/// The script agent's lines, and the keys it takes as answers. `{username}`,
/// `{ticketType}` and `{ticketContent}` are replaced with the ticket's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptSettings {
    pub greeting: String,
    pub body: String,
    pub confirm: String,
    pub on_confirmed: String,
    pub on_question: String,
    pub on_refused: String,
    pub on_silence: String,
    pub closing: String,
    /// Said before the call is handed to a person (the callee asked for one: `人工`).
    pub on_transfer: String,
    /// Said when nobody could take the call (no destination, busy, no answer).
    pub on_transfer_failed: String,
    /// Keys the callee may press to answer (`"1" = "已确认"`), and the answer each is.
    /// A key not named here is still a turn (`[按键 9]`), but no answer.
    pub keys: BTreeMap<String, KeyAnswer>,
}

/// Script lines a campaign says in place of the configured ones (`ScriptSettings`' names);
/// a line not given stays as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptLines {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_confirmed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_question: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_refused: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_silence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<String>,
}

impl ScriptLines {
    /// Each line given, with its name, for checks.
    pub fn given(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("greeting", &self.greeting),
            ("body", &self.body),
            ("confirm", &self.confirm),
            ("on_confirmed", &self.on_confirmed),
            ("on_question", &self.on_question),
            ("on_refused", &self.on_refused),
            ("on_silence", &self.on_silence),
            ("closing", &self.closing),
        ]
        .into_iter()
        .filter_map(|(name, line)| Some((name, line.as_deref()?)))
    }

    fn is_empty(&self) -> bool {
        self.given().next().is_none()
    }
}

impl ScriptSettings {
    /// These settings with a campaign's lines in place of the configured ones.
    pub fn with_lines(&self, lines: &ScriptLines) -> std::borrow::Cow<'_, ScriptSettings> {
        if lines.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut s = self.clone();
        for (line, given) in [
            (&mut s.greeting, &lines.greeting),
            (&mut s.body, &lines.body),
            (&mut s.confirm, &lines.confirm),
            (&mut s.on_confirmed, &lines.on_confirmed),
            (&mut s.on_question, &lines.on_question),
            (&mut s.on_refused, &lines.on_refused),
            (&mut s.on_silence, &lines.on_silence),
            (&mut s.closing, &lines.closing),
        ] {
            if let Some(given) = given {
                line.clone_from(given);
            }
        }
        std::borrow::Cow::Owned(s)
    }
}

/// What a key pressed in answer stands for: one of the outcomes a call can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAnswer {
    #[serde(rename = "已确认")]
    Confirmed,
    #[serde(rename = "拒绝")]
    Refused,
    #[serde(rename = "需回访")]
    CallBack,
    #[serde(rename = "转人工")]
    Human,
}

impl KeyAnswer {
    fn reply(self) -> Reply {
        match self {
            KeyAnswer::Confirmed => Reply::Confirmed,
            KeyAnswer::Refused => Reply::Refused,
            // A callback is what a question gets.
            KeyAnswer::CallBack => Reply::Question,
            KeyAnswer::Human => Reply::Human,
        }
    }

    fn intent(self) -> &'static str {
        match self {
            KeyAnswer::Confirmed => CONFIRMED,
            KeyAnswer::Refused => REFUSED,
            KeyAnswer::CallBack => CALL_BACK,
            KeyAnswer::Human => TRANSFER,
        }
    }
}

impl ScriptSettings {
    /// What the types do not check: every key is one of the keypad's.
    pub fn validate(&self) -> Result<(), String> {
        match self.keys.keys().find(|k| k.chars().count() != 1 || dtmf::key_named(k).is_none()) {
            Some(k) => Err(format!("agent.script.keys: `{k}` is no key (0-9, *, #, A-D)")),
            None => Ok(()),
        }
    }
}

impl Default for ScriptSettings {
    fn default() -> Self {
        ScriptSettings {
            greeting: "您好，请问是{username}吗？这里是客服中心的智能助理。".into(),
            body: "关于您的{ticketType}：{ticketContent}".into(),
            confirm: "请问您清楚了吗？".into(),
            on_confirmed: "好的，感谢您的确认。".into(),
            on_question: "您的问题我们已记录，稍后会有专人回电为您解答。再跟您确认一下要点：{ticketContent}"
                .into(),
            on_refused: "好的，打扰您了。".into(),
            on_silence: "抱歉，我没有听清。".into(),
            closing: "祝您生活愉快，再见。".into(),
            on_transfer: "好的，正在为您转接人工客服，请稍候。".into(),
            on_transfer_failed: "抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。".into(),
            keys: BTreeMap::new(),
        }
    }
}

/// How long to wait for the callee to answer the confirmation question.
const LISTEN_WAIT: Duration = Duration::from_secs(8);

pub struct ScriptAgent {
    script: ScriptSettings,
    /// `script.keys` by the key itself (`a` and `A` are one key).
    keys: BTreeMap<char, KeyAnswer>,
}

impl ScriptAgent {
    pub fn new(script: &ScriptSettings) -> ScriptAgent {
        let keys = script.keys.iter().filter_map(|(k, &a)| Some((dtmf::key_named(k)?, a))).collect();
        ScriptAgent { script: script.clone(), keys }
    }

    /// The answer a turn is, if it is a key named in `keys`.
    fn key_answer(&self, text: &str) -> Option<KeyAnswer> {
        self.keys.get(&dtmf::key_of_turn(text)?).copied()
    }

    /// Listens for the callee's answer, recording what was said (silence is not a turn).
    async fn hear(&self, call: &mut dyn CallSession, dialogue: &mut Vec<Turn>) -> Result<Reply, HungUp> {
        Ok(match call.listen(LISTEN_WAIT).await? {
            Heard::Speech(text) => {
                let reply = self.key_answer(&text).map_or_else(|| classify(&text), KeyAnswer::reply);
                dialogue.push(Turn::user(text));
                reply
            }
            Heard::Silence => Reply::Unclear,
        })
    }
}

impl ScriptAgent {
    /// The callee asked for a person: says so and hands the call over; when nobody takes
    /// it, tells them someone will call back and says goodbye.
    pub(super) async fn transfer(
        &self,
        task: &TaskContext,
        call: &mut dyn CallSession,
        dialogue: &mut Vec<Turn>,
    ) -> Result<(), HungUp> {
        let s = &self.script;
        if task.transfer_to.is_some() {
            speak(call, dialogue, &s.on_transfer, task).await?;
            if hand_over(task, call, dialogue).await? {
                return Ok(());
            }
        }
        speak(call, dialogue, &s.on_transfer_failed, task).await?;
        speak(call, dialogue, &s.closing, task).await?;
        Ok(())
    }
}

#[async_trait]
impl Agent for ScriptAgent {
    async fn converse(
        &self,
        task: &TaskContext,
        call: &mut dyn CallSession,
        dialogue: &mut Vec<Turn>,
    ) -> Result<(), HungUp> {
        let s = self.script.with_lines(&task.overrides.script);
        let intro = [&s.greeting, &s.body, &s.confirm];
        let mut answer = None;
        for (i, line) in intro.iter().enumerate() {
            if speak(call, dialogue, line, task).await? == Said::Whole {
                continue;
            }
            // The callee spoke over the line: hear them out first. A refusal ends the
            // introduction; so does a request for a person, any clear answer once the
            // ticket is being read, or whatever they say over the question itself.
            let heard = self.hear(call, dialogue).await?;
            if matches!(heard, Reply::Refused | Reply::Human)
                || (i > 0 && heard != Reply::Unclear)
                || i == intro.len() - 1
            {
                answer = Some(heard);
                break;
            }
        }
        let mut reply = match answer {
            Some(reply) => reply,
            None => self.hear(call, dialogue).await?,
        };
        if reply == Reply::Unclear {
            // One more try; after that, leave it.
            if speak(call, dialogue, &s.on_silence, task).await? == Said::Whole {
                speak(call, dialogue, &s.confirm, task).await?;
            }
            reply = self.hear(call, dialogue).await?;
        }
        let reaction = match reply {
            Reply::Confirmed => &s.on_confirmed,
            Reply::Question => &s.on_question,
            Reply::Refused => &s.on_refused,
            Reply::Human => return self.transfer(task, call, dialogue).await,
            // Still nothing clear: straight to the closing.
            Reply::Unclear => "",
        };
        speak(call, dialogue, reaction, task).await?;
        speak(call, dialogue, &s.closing, task).await?;
        Ok(())
    }

    /// A key pressed in answer decides (the last one, if the callee changed their mind);
    /// otherwise the rules on what was said.
    async fn intent(&self, _task: &TaskContext, dialogue: &[Turn]) -> String {
        let by_key =
            dialogue.iter().rev().filter(|t| t.role == Role::User).find_map(|t| self.key_answer(&t.content));
        by_key.map_or_else(|| intent_by_rules(dialogue), KeyAnswer::intent).to_string()
    }
}

/// Says one scripted line, recording it in the dialogue as it is spoken: as much of it as
/// the callee heard, if they spoke over it.
async fn speak(
    call: &mut dyn CallSession,
    dialogue: &mut Vec<Turn>,
    template: &str,
    task: &TaskContext,
) -> Result<Said, HungUp> {
    let line = task.fill(template);
    // An operator may blank out a line they don't want.
    if line.trim().is_empty() {
        return Ok(Said::Whole);
    }
    dialogue.push(Turn::assistant(line.clone()));
    let said = call.say(&line).await?;
    if let (Said::Interrupted { .. }, Some(turn)) = (said, dialogue.last_mut()) {
        turn.content = said.heard_of(&line);
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::domain::{HangupCause, Role};
    use crate::telephony::{CallEnd, HangupReason, TransferFailed, Transferred};

    /// A callee that answers from a list and can hang up after a number of lines.
    #[derive(Default)]
    struct FakeCall {
        replies: VecDeque<Heard>,
        hang_up_after_lines: Option<usize>,
        /// The callee speaks over the line with this index, half way through it.
        speaks_over_line: Option<usize>,
        said: Vec<String>,
        listened: usize,
        /// The person answers a transfer (else: busy); the destinations asked for.
        person_answers: bool,
        transfers: Vec<String>,
    }

    impl FakeCall {
        fn replying(replies: &[Heard]) -> FakeCall {
            FakeCall { replies: replies.iter().cloned().collect(), ..FakeCall::default() }
        }

        fn gone(&self) -> Result<(), HungUp> {
            match self.hang_up_after_lines {
                Some(n) if self.said.len() >= n => Err(HungUp(HangupCause::normal_clearing())),
                _ => Ok(()),
            }
        }
    }

    #[async_trait]
    impl CallSession for FakeCall {
        async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
            self.gone()?;
            self.said.push(text.to_string());
            Ok(match self.speaks_over_line {
                Some(n) if n + 1 == self.said.len() => Said::Interrupted { played: 0.5 },
                _ => Said::Whole,
            })
        }
        async fn listen(&mut self, max_wait: Duration) -> Result<Heard, HungUp> {
            assert_eq!(max_wait, LISTEN_WAIT);
            self.gone()?;
            self.listened += 1;
            Ok(self.replies.pop_front().unwrap_or(Heard::Silence))
        }
        async fn transfer(&mut self, to: &str, _: Duration) -> Result<Transferred, TransferFailed> {
            self.transfers.push(to.to_string());
            match self.person_answers {
                true => Ok(Transferred { to: to.to_string(), answered_ms: 1 }),
                false => Err(TransferFailed::NotAnswered(HangupCause::user_busy())),
            }
        }
        async fn hang_up(self: Box<Self>, _: HangupReason) -> CallEnd {
            unreachable!("the agent never hangs up")
        }
    }

    fn task() -> TaskContext {
        TaskContext {
            batch_id: 10001,
            ticket_no: "T1".into(),
            username: "张三".into(),
            ticket_type: "维修工单".into(),
            ticket_content: "明天上午九点上门维修".into(),
            overrides: Default::default(),
            transfer_to: None,
            transfer_ring_timeout: Duration::from_secs(30),
        }
    }

    fn speech(text: &str) -> Heard {
        Heard::Speech(text.into())
    }

    async fn converse(call: &mut FakeCall) -> (Result<(), HungUp>, Vec<Turn>) {
        let mut dialogue = Vec::new();
        let result =
            ScriptAgent::new(&ScriptSettings::default()).converse(&task(), call, &mut dialogue).await;
        (result, dialogue)
    }

    fn lines(dialogue: &[Turn]) -> Vec<(Role, &str)> {
        dialogue.iter().map(|t| (t.role, t.content.as_str())).collect()
    }

    const GREETING: &str = "您好，请问是张三吗？这里是客服中心的智能助理。";
    const BODY: &str = "关于您的维修工单：明天上午九点上门维修";
    const CONFIRM: &str = "请问您清楚了吗？";
    const CLOSING: &str = "祝您生活愉快，再见。";

    #[tokio::test]
    async fn a_callee_who_confirms_is_thanked_and_bid_goodbye() {
        let mut call = FakeCall::replying(&[speech("好的，我知道了")]);
        let (result, dialogue) = converse(&mut call).await;
        assert_eq!(result, Ok(()));
        assert_eq!(
            lines(&dialogue),
            [
                (Role::Assistant, GREETING),
                (Role::Assistant, BODY),
                (Role::Assistant, CONFIRM),
                (Role::User, "好的，我知道了"),
                (Role::Assistant, "好的，感谢您的确认。"),
                (Role::Assistant, CLOSING),
            ]
        );
        // What was said is exactly what the dialogue shows.
        let said: Vec<&str> =
            dialogue.iter().filter(|t| t.role == Role::Assistant).map(|t| &*t.content).collect();
        assert_eq!(call.said, said);
    }

    #[tokio::test]
    async fn a_callee_who_speaks_over_the_ticket_is_heard_at_once_and_the_line_kept_as_heard() {
        let mut call =
            FakeCall { speaks_over_line: Some(1), ..FakeCall::replying(&[speech("知道了，谢谢")]) };
        let (result, dialogue) = converse(&mut call).await;
        assert_eq!(result, Ok(()));
        assert_eq!(
            lines(&dialogue),
            [
                (Role::Assistant, GREETING),
                (Role::Assistant, "关于您的维修工单：明…"),
                (Role::User, "知道了，谢谢"),
                (Role::Assistant, "好的，感谢您的确认。"),
                (Role::Assistant, CLOSING),
            ]
        );
    }

    #[tokio::test]
    async fn a_callee_who_speaks_over_the_greeting_is_heard_and_then_told_the_ticket() {
        let mut call = FakeCall {
            speaks_over_line: Some(0),
            ..FakeCall::replying(&[speech("我是"), speech("好的")])
        };
        let (result, dialogue) = converse(&mut call).await;
        assert_eq!(result, Ok(()));
        assert_eq!(
            lines(&dialogue),
            [
                (Role::Assistant, "您好，请问是张三吗？这里…"),
                (Role::User, "我是"),
                (Role::Assistant, BODY),
                (Role::Assistant, CONFIRM),
                (Role::User, "好的"),
                (Role::Assistant, "好的，感谢您的确认。"),
                (Role::Assistant, CLOSING),
            ]
        );
    }

    #[tokio::test]
    async fn a_question_gets_a_callback_promise_and_the_key_point_again() {
        let mut call = FakeCall::replying(&[speech("请问具体是什么时间？")]);
        let (result, dialogue) = converse(&mut call).await;
        assert_eq!(result, Ok(()));
        assert_eq!(
            lines(&dialogue)[3..],
            [
                (Role::User, "请问具体是什么时间？"),
                (
                    Role::Assistant,
                    "您的问题我们已记录，稍后会有专人回电为您解答。再跟您确认一下要点：明天上午九点上门维修"
                ),
                (Role::Assistant, CLOSING),
            ]
        );
    }

    #[tokio::test]
    async fn a_refusal_is_accepted_politely() {
        let mut call = FakeCall::replying(&[speech("不需要，谢谢")]);
        let (_, dialogue) = converse(&mut call).await;
        assert_eq!(
            lines(&dialogue)[3..],
            [(Role::User, "不需要，谢谢"), (Role::Assistant, "好的，打扰您了。"), (Role::Assistant, CLOSING)]
        );
    }

    #[tokio::test]
    async fn silence_gets_the_question_once_more_and_is_never_a_turn() {
        let mut call = FakeCall::replying(&[Heard::Silence, speech("嗯，明白")]);
        let (_, dialogue) = converse(&mut call).await;
        assert_eq!(
            lines(&dialogue)[3..],
            [
                (Role::Assistant, "抱歉，我没有听清。"),
                (Role::Assistant, CONFIRM),
                (Role::User, "嗯，明白"),
                (Role::Assistant, "好的，感谢您的确认。"),
                (Role::Assistant, CLOSING),
            ]
        );
    }

    #[tokio::test]
    async fn a_callee_silent_twice_hears_the_closing_after_one_retry() {
        let mut call = FakeCall::replying(&[]);
        let (result, dialogue) = converse(&mut call).await;
        assert_eq!(result, Ok(()));
        assert_eq!(call.listened, 2);
        assert_eq!(
            lines(&dialogue)[3..],
            [(Role::Assistant, "抱歉，我没有听清。"), (Role::Assistant, CONFIRM), (Role::Assistant, CLOSING)]
        );
    }

    #[tokio::test]
    async fn a_callee_who_hangs_up_ends_the_conversation_without_a_closing() {
        let mut call = FakeCall { hang_up_after_lines: Some(1), ..FakeCall::default() };
        let (result, dialogue) = converse(&mut call).await;
        assert_eq!(result, Err(HungUp(HangupCause::normal_clearing())));
        // The line being spoken when they hung up stays in the dialogue.
        assert_eq!(lines(&dialogue), [(Role::Assistant, GREETING), (Role::Assistant, BODY)]);
        assert_eq!(call.listened, 0);
    }

    #[tokio::test]
    async fn blank_script_lines_are_skipped() {
        let script = ScriptSettings { body: String::new(), closing: " ".into(), ..ScriptSettings::default() };
        let mut call = FakeCall::replying(&[speech("可以")]);
        let mut dialogue = Vec::new();
        ScriptAgent::new(&script).converse(&task(), &mut call, &mut dialogue).await.unwrap();
        assert_eq!(call.said, [GREETING, CONFIRM, "好的，感谢您的确认。"]);
    }

    fn with_keys(keys: &[(&str, KeyAnswer)]) -> ScriptSettings {
        let keys = keys.iter().map(|(k, a)| (k.to_string(), *a)).collect();
        ScriptSettings { keys, ..ScriptSettings::default() }
    }

    #[tokio::test]
    async fn a_key_named_in_the_key_map_is_the_answer_and_the_outcome() {
        let agent = ScriptAgent::new(&with_keys(&[("1", KeyAnswer::Confirmed), ("2", KeyAnswer::Refused)]));
        // Unclear speech first; after the retry, key 2.
        let mut call = FakeCall::replying(&[speech("[语音 2秒]"), speech("[按键 2]")]);
        let mut dialogue = Vec::new();
        agent.converse(&task(), &mut call, &mut dialogue).await.unwrap();
        assert_eq!(
            lines(&dialogue)[3..],
            [
                (Role::User, "[语音 2秒]"),
                (Role::Assistant, "抱歉，我没有听清。"),
                (Role::Assistant, CONFIRM),
                (Role::User, "[按键 2]"),
                (Role::Assistant, "好的，打扰您了。"),
                (Role::Assistant, CLOSING),
            ]
        );
        assert_eq!(agent.intent(&task(), &dialogue).await, REFUSED);
    }

    #[tokio::test]
    async fn a_key_answer_wins_over_words_and_the_last_key_over_earlier_ones() {
        let agent = ScriptAgent::new(&with_keys(&[("1", KeyAnswer::Confirmed), ("#", KeyAnswer::CallBack)]));
        let said = |lines: &[&str]| {
            let mut d = vec![Turn::assistant("您好")];
            d.extend(lines.iter().map(|l| Turn::user(*l)));
            d
        };
        let t = task();
        assert_eq!(agent.intent(&t, &said(&["不太清楚", "[按键 1]"])).await, CONFIRMED);
        assert_eq!(agent.intent(&t, &said(&["[按键 1]", "[按键 #]", "[按键 9]"])).await, CALL_BACK);
        // Keys not in the map are no answer: the words decide.
        assert_eq!(agent.intent(&t, &said(&["[按键 9]", "好的"])).await, CONFIRMED);
        assert_eq!(agent.intent(&t, &said(&["[按键 9]"])).await, "无效");
    }

    #[tokio::test]
    async fn without_a_key_map_a_key_is_a_turn_but_no_answer() {
        let mut call = FakeCall::replying(&[speech("[按键 1]"), speech("[按键 1]")]);
        let (_, dialogue) = converse(&mut call).await;
        assert_eq!(
            lines(&dialogue)[3..],
            [
                (Role::User, "[按键 1]"),
                (Role::Assistant, "抱歉，我没有听清。"),
                (Role::Assistant, CONFIRM),
                (Role::User, "[按键 1]"),
                (Role::Assistant, CLOSING),
            ]
        );
    }

    #[test]
    fn the_key_map_takes_keypad_keys_only() {
        assert_eq!(with_keys(&[("1", KeyAnswer::Confirmed), ("*", KeyAnswer::Refused)]).validate(), Ok(()));
        assert_eq!(with_keys(&[("b", KeyAnswer::CallBack)]).validate(), Ok(()));
        for bad in ["10", "", "x", "12"] {
            let err = with_keys(&[(bad, KeyAnswer::Confirmed)]).validate().unwrap_err();
            assert!(err.contains("agent.script.keys"), "{err}");
        }
        // The answers are the outcomes' own words.
        let read = |toml: &str| {
            use figment::providers::{Format, Toml};
            figment::Figment::from(Toml::string(toml)).extract::<ScriptSettings>().ok()
        };
        let keys = read("keys = { 1 = \"已确认\", 2 = \"拒绝\", 3 = \"需回访\" }").expect("keys");
        let want =
            with_keys(&[("1", KeyAnswer::Confirmed), ("2", KeyAnswer::Refused), ("3", KeyAnswer::CallBack)]);
        assert_eq!(keys.keys, want.keys);
        assert!(read("keys = { 1 = \"好\" }").is_none(), "not an outcome");
    }

    #[test]
    fn replies_are_sorted_by_keywords() {
        for (text, expected) in [
            ("好的，我知道了", Reply::Confirmed),
            ("可以", Reply::Confirmed),
            ("嗯", Reply::Confirmed),
            ("明白了，确认", Reply::Confirmed),
            ("请问具体是什么时间？", Reply::Question),
            ("这个要怎么处理", Reply::Question),
            ("是哪个部门", Reply::Question),
            ("好的，不过几点来?", Reply::Question),
            ("不需要，谢谢", Reply::Refused),
            ("不行", Reply::Refused),
            ("我现在没空", Reply::Refused),
            ("别打了", Reply::Refused),
            ("[语音 3秒]", Reply::Unclear),
            ("", Reply::Unclear),
            ("能帮我转人工吗？", Reply::Human),
            ("我要找真人", Reply::Human),
        ] {
            assert_eq!(classify(text), expected, "{text}");
        }
    }

    #[test]
    fn templates_take_the_ticket_fields_and_leave_other_braces_alone() {
        let mut t = task();
        t.ticket_content = "内容含{username}".into();
        assert_eq!(
            t.fill("{username}/{ticketType}/{ticketContent}/{other}/{"),
            "张三/维修工单/内容含{username}/{other}/{"
        );
    }

    async fn ask_for_a_person(person_answers: bool, to: Option<&str>) -> (FakeCall, Vec<Turn>, String) {
        let mut call =
            FakeCall { person_answers, ..FakeCall::replying(&[speech("不要机器人，给我转人工")]) };
        let mut dialogue = Vec::new();
        let task = TaskContext { transfer_to: to.map(str::to_string), ..task() };
        let agent = ScriptAgent::new(&ScriptSettings::default());
        assert_eq!(agent.converse(&task, &mut call, &mut dialogue).await, Ok(()));
        let intent = agent.intent(&task, &dialogue).await;
        (call, dialogue, intent)
    }

    const ON_TRANSFER: &str = "好的，正在为您转接人工客服，请稍候。";
    const ON_TRANSFER_FAILED: &str = "抱歉，人工客服暂时无法接听，稍后会有专人回电联系您。";

    #[tokio::test]
    async fn a_callee_who_asks_for_a_person_is_told_so_and_handed_over() {
        let (call, dialogue, intent) = ask_for_a_person(true, Some("sip:8001@pbx.example.com")).await;
        assert_eq!(call.transfers, ["sip:8001@pbx.example.com"]);
        assert_eq!(
            lines(&dialogue)[3..],
            [
                (Role::User, "不要机器人，给我转人工"),
                (Role::Assistant, ON_TRANSFER),
                (Role::Assistant, "[转人工 8001]"),
            ]
        );
        // Nothing is said once the person has the call.
        assert_eq!(call.said.last().map(String::as_str), Some(ON_TRANSFER));
        assert_eq!(intent, TRANSFER);
    }

    #[tokio::test]
    async fn a_person_who_is_busy_or_nowhere_to_go_leaves_the_callee_told_someone_will_call_back() {
        let (call, dialogue, intent) = ask_for_a_person(false, Some("8001")).await;
        assert_eq!(call.transfers, ["8001"]);
        let said: Vec<(Role, &str)> = lines(&dialogue)[4..].to_vec();
        assert_eq!(
            said,
            [
                (Role::Assistant, ON_TRANSFER),
                (Role::Assistant, ON_TRANSFER_FAILED),
                (Role::Assistant, CLOSING)
            ]
        );
        assert_eq!(intent, TRANSFER);

        let (call, dialogue, intent) = ask_for_a_person(true, None).await;
        assert!(call.transfers.is_empty(), "nobody to transfer to");
        assert_eq!(
            lines(&dialogue)[4..],
            [(Role::Assistant, ON_TRANSFER_FAILED), (Role::Assistant, CLOSING)]
        );
        assert_eq!(intent, TRANSFER);
    }
}
