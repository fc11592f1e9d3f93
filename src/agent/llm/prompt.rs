//! What goes to the model and what comes back as speech: the system prompt template, the
//! hidden cue lines, the sentence splitter, and the control tokens of models without tools.

use crate::agent::{CALL_BACK, CONFIRMED, NO_RESPONSE, REFUSED};

/// The outcome of a call whose callee asked for a person.
pub use crate::agent::TRANSFER;

/// The default system prompt; `{username}`, `{ticketType}` and `{ticketContent}` are filled in.
pub const DEFAULT_SYSTEM_PROMPT: &str = "\
你是客服中心的电话智能助理，正在给客户{username}打电话，通知一项{ticketType}。
通知内容：{ticketContent}

要求：
1. 你说的每句话都会转成语音播放给对方：用简短、礼貌、口语化的中文，每次最多三句话，不要用列表、表情或 Markdown。
2. 先问好并确认对方是{username}本人，再说明通知内容，然后问对方是否清楚。
3. 回答对方关于这项通知的问题；通知里没有的信息不要编造，告诉对方稍后会有专人回电。
4. 对方确认、拒绝或问题已记录后，礼貌道别，并调用 end_call 结束通话，intent 填 已确认、拒绝、需回访 或 无效。
5. 对方要求人工服务时，告诉对方马上为其转接人工客服，并调用 transfer_to_human。
6. 如果不能调用工具，就在道别的话后面写 [END:结果]（例如 [END:已确认]），要求人工时写 [HUMAN]。
7. 对方说的话里的 [按键 N] 表示对方在电话键盘上按了 N 键。";

/// The user turn that opens the conversation (never stored in the dialogue): many chat
/// templates expect a user message after the system prompt.
pub const OPENING_CUE: &str = "（电话已接通，请开始说话。）";
/// What the model is told when the callee said nothing within the wait.
pub const SILENCE_CUE: &str = "（对方没有说话。）";

/// How the model ended its turn, besides speaking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// End the call, with the outcome when the model gave one.
    End(Option<String>),
    /// The callee wants a person.
    Human,
}

/// Normalises an outcome the model gave to one of 已确认 / 拒绝 / 需回访 / 无效 / 转人工;
/// `None` for anything unrecognisable (the rules decide then).
pub fn normalise_intent(raw: &str) -> Option<&'static str> {
    let s = raw.trim().to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if s.is_empty() {
        None
    } else if has(&["转人工", "人工", "human", "transfer"]) {
        Some(TRANSFER)
    } else if has(&[
        "无效",
        "无应答",
        "无人",
        "未接",
        "invalid",
        "no_response",
        "no response",
        "silent",
        "none",
    ]) {
        Some(NO_RESPONSE)
    } else if has(&["回访", "回电", "callback", "call_back", "call back", "question", "follow"]) {
        Some(CALL_BACK)
    } else if has(&["拒绝", "不需要", "refus", "reject", "decline"]) {
        Some(REFUSED)
    } else if has(&["确认", "同意", "confirm", "agree", "accept"]) {
        Some(CONFIRMED)
    } else {
        None
    }
}

/// Takes `[END]`, `[END:结果]`, `[HUMAN]` (also with `【】` and a full-width colon) out of
/// `text`, collecting them.
pub fn strip_controls(text: &str, found: &mut Vec<Control>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['[', '【']) {
        let inner_start = open + rest[open..].chars().next().map_or(1, char::len_utf8);
        let Some(close) = rest[inner_start..].find([']', '】']).map(|i| inner_start + i) else { break };
        let inner = rest[inner_start..close].trim();
        let upper = inner.to_ascii_uppercase();
        let control = if upper == "HUMAN" || inner == "转人工" {
            Some(Control::Human)
        } else if let Some(arg) = upper.strip_prefix("END") {
            match arg.trim_start() {
                "" => Some(Control::End(None)),
                a if a.starts_with(':') || a.starts_with('：') => {
                    // The argument as written (the uppercase copy is only for matching).
                    let arg = inner[3..].trim_start();
                    let arg = arg.trim_start_matches([':', '：']).trim();
                    Some(Control::End(Some(arg.to_string())))
                }
                _ => None,
            }
        } else {
            None
        };
        let end = close + rest[close..].chars().next().map_or(1, char::len_utf8);
        match control {
            Some(c) => {
                out.push_str(&rest[..open]);
                found.push(c);
            }
            None => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Characters that end a sentence to speak.
fn ends_sentence(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '!' | '?' | '；' | '\n')
}

/// Characters that stay with the sentence they follow (`……`, `”`, `）`).
fn trails_sentence(c: char) -> bool {
    ends_sentence(c) || matches!(c, '”' | '’' | '"' | '\'' | '）' | ')' | '」' | '』' | '…' | ' ')
}

/// Where a long sentence may be cut so the callee is not kept waiting.
fn soft_break(c: char) -> bool {
    matches!(c, '，' | ',' | '、' | '：')
}

/// A sentence this long (in characters) with no end in sight is cut at its last comma.
const SOFT_LIMIT: usize = 60;

/// Cuts streamed text into sentences as soon as each is complete: after 。！？!?；or a
/// line break (with any closing marks that follow), or at a comma once a sentence grows long.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    buf: String,
}

impl SentenceSplitter {
    /// Adds text; returns the sentences it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            // A sentence is complete once a character that does not trail it follows its end.
            let mut end = None;
            let mut in_end = false;
            for (i, c) in self.buf.char_indices() {
                if in_end && !trails_sentence(c) {
                    end = Some(i);
                    break;
                }
                in_end = in_end || ends_sentence(c);
            }
            match end {
                Some(i) => {
                    let rest = self.buf.split_off(i);
                    out.push(std::mem::replace(&mut self.buf, rest));
                }
                None => break,
            }
        }
        if !self.buf.chars().any(ends_sentence) && self.buf.chars().count() >= SOFT_LIMIT {
            if let Some((i, c)) = self.buf.char_indices().rfind(|&(_, c)| soft_break(c)) {
                let rest = self.buf.split_off(i + c.len_utf8());
                out.push(std::mem::replace(&mut self.buf, rest));
            }
        }
        out
    }

    /// What is left at the end of the text.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.trim().is_empty()).then_some(rest)
    }
}

/// Drops a reasoning model's leading `<think>…</think>` block from streamed text.
#[derive(Debug, Default)]
struct ThinkFilter {
    raw: String,
    /// Bytes of `raw` already passed on or dropped.
    done: usize,
    /// Still deciding whether the text opens with a think block, or inside one.
    holding: bool,
    started: bool,
}

impl ThinkFilter {
    const OPEN: &'static str = "<think>";
    const CLOSE: &'static str = "</think>";

    /// Adds text; returns the part that is to be spoken.
    fn push(&mut self, text: &str) -> String {
        self.raw.push_str(text);
        if !self.started {
            let head = self.raw.trim_start();
            if head.is_empty() {
                return String::new();
            }
            if head.len() < Self::OPEN.len() && Self::OPEN.starts_with(head) {
                return String::new(); // maybe the start of `<think>`
            }
            self.started = true;
            self.holding = head.starts_with(Self::OPEN);
        }
        if self.holding {
            match self.raw.find(Self::CLOSE) {
                Some(at) => {
                    self.holding = false;
                    self.done = at + Self::CLOSE.len();
                }
                None => return String::new(),
            }
        }
        let out = self.raw[self.done..].to_string();
        self.done = self.raw.len();
        out
    }

    /// Text held back that turned out to be speech (an unclosed `<think` prefix).
    fn finish(&mut self) -> String {
        if self.started {
            return String::new();
        }
        self.started = true;
        let out = self.raw[self.done..].to_string();
        self.done = self.raw.len();
        out
    }
}

/// Turns the model's text, as it streams in, into clean sentences to say, and collects the
/// control tokens it carried.
#[derive(Debug, Default)]
pub struct Speech {
    think: ThinkFilter,
    splitter: SentenceSplitter,
    pub controls: Vec<Control>,
}

impl Speech {
    pub fn push(&mut self, text: &str) -> Vec<String> {
        let visible = self.think.push(text);
        let sentences = self.splitter.push(&visible);
        self.clean(sentences)
    }

    pub fn finish(&mut self) -> Vec<String> {
        let visible = self.think.finish();
        let mut sentences = self.splitter.push(&visible);
        sentences.extend(self.splitter.finish());
        self.clean(sentences)
    }

    fn clean(&mut self, sentences: Vec<String>) -> Vec<String> {
        sentences
            .into_iter()
            .map(|s| strip_controls(&s, &mut self.controls).replace("**", "").trim().to_string())
            .filter(|s| s.chars().any(|c| c.is_alphanumeric()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::TaskContext;

    fn split_all(chunks: &[&str]) -> Vec<String> {
        let mut s = SentenceSplitter::default();
        let mut out: Vec<String> = chunks.iter().flat_map(|c| s.push(c)).collect();
        out.extend(s.finish());
        out
    }

    #[test]
    fn sentences_end_at_chinese_and_ascii_stops_and_line_breaks() {
        assert_eq!(
            split_all(&["您好，请问是张三吗？我是客服。提醒您！OK? 好的；\n最后一句"]),
            ["您好，请问是张三吗？", "我是客服。", "提醒您！", "OK? ", "好的；\n", "最后一句"]
        );
    }

    #[test]
    fn a_sentence_is_given_as_soon_as_the_next_one_begins_whatever_the_chunks() {
        let mut s = SentenceSplitter::default();
        assert!(s.push("您好").is_empty());
        assert!(s.push("，请问是张三吗").is_empty());
        // The stop alone does not finish it: a closing mark may still follow.
        assert!(s.push("？").is_empty());
        assert_eq!(s.push("我"), ["您好，请问是张三吗？"]);
        assert_eq!(s.push("是客服。再见"), ["我是客服。"]);
        assert_eq!(s.finish().as_deref(), Some("再见"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn runs_of_stops_and_closing_marks_stay_with_their_sentence() {
        assert_eq!(
            split_all(&["真的吗？！", "“好的。”", "他说。再见……", "嗯"]),
            ["真的吗？！", "“好的。”", "他说。", "再见……嗯"]
        );
        assert_eq!(split_all(&["（备注。）下一句"]), ["（备注。）", "下一句"]);
    }

    #[test]
    fn a_long_sentence_is_cut_at_its_last_comma() {
        let long = format!("{}，{}，后面还有", "一".repeat(30), "二".repeat(30));
        let mut s = SentenceSplitter::default();
        let out = s.push(&long);
        assert_eq!(out, [format!("{}，{}，", "一".repeat(30), "二".repeat(30))]);
        assert_eq!(s.finish().as_deref(), Some("后面还有"));
        // Without a comma it waits for the end.
        assert!(SentenceSplitter::default().push(&"三".repeat(100)).is_empty());
    }

    #[test]
    fn control_tokens_are_taken_out_and_collected() {
        let mut found = Vec::new();
        assert_eq!(strip_controls("好的，再见。[END:已确认]", &mut found), "好的，再见。");
        assert_eq!(strip_controls("[HUMAN]请稍等", &mut found), "请稍等");
        assert_eq!(strip_controls("再见【END：拒绝】", &mut found), "再见");
        assert_eq!(strip_controls("再见 [end]", &mut found), "再见 ");
        assert_eq!(
            found,
            [
                Control::End(Some("已确认".into())),
                Control::Human,
                Control::End(Some("拒绝".into())),
                Control::End(None)
            ]
        );
        let mut none = Vec::new();
        assert_eq!(strip_controls("[备注] a[b] [ENDING] 【", &mut none), "[备注] a[b] [ENDING] 【");
        assert!(none.is_empty());
    }

    #[test]
    fn speech_drops_think_blocks_tokens_and_markdown_and_keeps_the_words() {
        let mut speech = Speech::default();
        let mut said = Vec::new();
        for chunk in [
            "<thi",
            "nk>先想想。再想",
            "想。</think>\n\n",
            "**您好**！",
            "请问是张三吗？",
            "再见。",
            "[END:已",
            "确认]",
        ] {
            said.extend(speech.push(chunk));
        }
        said.extend(speech.finish());
        assert_eq!(said, ["您好！", "请问是张三吗？", "再见。"]);
        assert_eq!(speech.controls, [Control::End(Some("已确认".into()))]);

        let mut plain = Speech::default();
        let mut said = plain.push("<b>不是思考");
        said.extend(plain.finish());
        assert_eq!(said, ["<b>不是思考"]);
        let mut short = Speech::default();
        assert!(short.push("<th").is_empty());
        assert_eq!(short.finish(), ["<th"]);
    }

    #[test]
    fn outcomes_from_the_model_are_normalised() {
        for (raw, expected) in [
            ("已确认", Some(CONFIRMED)),
            ("confirmed", Some(CONFIRMED)),
            (" 拒绝 ", Some(REFUSED)),
            ("refused", Some(REFUSED)),
            ("需回访", Some(CALL_BACK)),
            ("callback", Some(CALL_BACK)),
            ("无效", Some(NO_RESPONSE)),
            ("转人工", Some(TRANSFER)),
            ("transfer_to_human", Some(TRANSFER)),
            ("", None),
            ("maybe", None),
        ] {
            assert_eq!(normalise_intent(raw), expected, "{raw}");
        }
    }

    #[test]
    fn the_template_takes_the_ticket_fields_once() {
        let task = TaskContext {
            batch_id: 1,
            ticket_no: "T1".into(),
            username: "张三".into(),
            ticket_type: "维修工单".into(),
            ticket_content: "含{username}".into(),
            overrides: Default::default(),
            transfer_to: None,
            transfer_ring_timeout: std::time::Duration::from_secs(30),
        };
        assert_eq!(
            task.fill("{username}/{ticketType}/{ticketContent}/{x}/{"),
            "张三/维修工单/含{username}/{x}/{"
        );
        let prompt = task.fill(DEFAULT_SYSTEM_PROMPT);
        assert!(prompt.contains("客户张三") && prompt.contains("通知内容：含{username}"), "{prompt}");
    }
}
