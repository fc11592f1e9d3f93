//! Typed settings. Defaults are built in; `config/default.toml` (when present in the
//! working directory), then `--config FILE`, then `CALLCENTER__SECTION__KEY` variables
//! overlay them. Unknown keys in a file stop the start; unknown variables are warned about.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::NaiveTime;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

const ENV_PREFIX: &str = "CALLCENTER__";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub timezone: Timezone,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub recordings: RecordingSettings,
    pub api: ApiSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub webhook: WebhookSettings,
    pub dialer: DialerSettings,
    pub sim: SimSettings,
    pub sip: crate::telephony::sip::SipSettings,
    pub freeswitch: crate::telephony::freeswitch::FreeswitchSettings,
    pub agent: AgentSettings,
}

/// An IANA time zone name, checked when the settings load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timezone(pub chrono_tz::Tz);

impl Default for Timezone {
    fn default() -> Self {
        Timezone(chrono_tz::Asia::Shanghai)
    }
}

impl TryFrom<String> for Timezone {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
            .map(Timezone)
            .map_err(|_| format!("unknown time zone `{name}` (expected an IANA name such as Asia/Shanghai)"))
    }
}

impl From<Timezone> for String {
    fn from(tz: Timezone) -> String {
        tz.0.name().to_string()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// Prefix of `wavFileUrl`; empty gives the relative `/recordings/files?filename=…`.
    pub public_url: String,
    /// Origins allowed to call the API from a browser (CORS); `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// A connection that has not sent a whole request head this long after it opened (or
    /// after its last answer) is closed.
    pub header_read_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8899".into(),
            public_url: String::new(),
            cors_origins: Vec::new(),
            header_read_timeout_secs: 10,
            max_connections: 10_000,
        }
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSettings {
    pub dir: PathBuf,
    /// Answered calls in a row without a recording after which /readyz says
    /// `recordings: failing`.
    pub failing_after: u32,
    /// Whether /readyz also answers 503 while recordings are failing (off: calls go on
    /// without recordings, and only the readiness data and the metric say so).
    pub unready_when_failing: bool,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings { dir: "data/recordings".into(), failing_after: 3, unready_when_failing: false }
    }
}

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
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_tasks_per_request: 1000,
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 1024,
            body_read_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
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

/// Completion webhooks. Empty `url`: none are sent (and no events are kept).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub url: String,
    /// HMAC-SHA256 key of `X-Callcenter-Signature`.
    pub secret: String,
    /// Give an event up when it could not be delivered for this long.
    pub max_age_secs: u64,
    /// How long one delivery may take.
    pub timeout_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { url: String::new(), secret: String::new(), max_age_secs: 86_400, timeout_secs: 10 }
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "(hidden)" })
            .field("max_age_secs", &self.max_age_secs)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierKind {
    Sim,
    Sip,
    Freeswitch,
}

/// A daily window `HH:MM-HH:MM` in the configured time zone; `00:00-24:00` is always open.
/// A window whose end is before its start runs past midnight (`20:00-08:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallingHours {
    /// Minutes after midnight.
    pub start: u32,
    pub end: u32,
}

impl CallingHours {
    pub const ALWAYS: CallingHours = CallingHours { start: 0, end: 24 * 60 };

    pub fn is_always(&self) -> bool {
        self.start == 0 && self.end == 24 * 60
    }

    pub fn contains(&self, t: NaiveTime) -> bool {
        use chrono::Timelike;
        let m = t.hour() * 60 + t.minute();
        if self.start <= self.end { self.start <= m && m < self.end } else { m >= self.start || m < self.end }
    }
}

impl TryFrom<String> for CallingHours {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("calling_hours must look like \"08:00-21:00\", got `{s}`");
        let minutes = |hm: &str| -> Option<u32> {
            let (h, m) = hm.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == end || start == 24 * 60 {
            return Err(bad());
        }
        Ok(CallingHours { start, end })
    }
}

impl From<CallingHours> for String {
    fn from(h: CallingHours) -> String {
        format!("{:02}:{:02}-{:02}:{:02}", h.start / 60, h.start % 60, h.end / 60, h.end % 60)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    /// Probability that an ordinary number answers.
    pub answer_rate: f64,
    /// Scales ringing and talking time; 0 = instant.
    pub time_scale: f64,
    pub seed: u64,
    /// A file the carrier appends one JSON line to per answered call, with the call's
    /// answer and end as the carrier's side saw them; empty: none.
    pub call_log: PathBuf,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { answer_rate: 0.7, time_scale: 1.0, seed: 42, call_log: PathBuf::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    Script,
    Llm,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    pub kind: AgentKind,
    pub script: ScriptSettings,
    pub llm: crate::agent::llm::LlmSettings,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            kind: AgentKind::Script,
            script: ScriptSettings::default(),
            llm: crate::agent::llm::LlmSettings::default(),
        }
    }
}

/// The script agent's lines. `{username}`, `{ticketType}` and `{ticketContent}` are
/// replaced with the ticket's fields.
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
        }
    }
}

/// The loaded settings and the warnings to log once logging is up.
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Loads the layers in order. `cwd_default` is `config/default.toml` when present.
    pub fn load(config_file: Option<&Path>) -> Result<Loaded, String> {
        let cwd_default = Path::new("config/default.toml");
        let env = std::env::vars().collect::<Vec<_>>();
        Self::load_from(cwd_default.exists().then_some(cwd_default), config_file, &env)
    }

    pub fn load_from(
        cwd_default: Option<&Path>,
        config_file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Loaded, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = cwd_default {
            figment = figment.merge(Toml::file_exact(path));
        }
        if let Some(path) = config_file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let known = known_keys();
        let mut warnings = Vec::new();
        let mut overrides = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if known.contains(&key) {
                overrides.push((key, value.clone()));
            } else {
                warnings.push(format!("ignoring unknown setting {name} (no key `{key}`)"));
            }
        }
        // Values from the environment are typed by the key they set, so that
        // `node_id=01` stays a string and `max_attempts=abc` is an error naming the key.
        let defaults = serde_json::to_value(Settings::default()).expect("settings serialize");
        for (key, raw) in overrides {
            let value = match lookup(&defaults, &key) {
                Some(serde_json::Value::String(_)) => figment::value::Value::from(raw.clone()),
                _ => raw.parse::<figment::value::Value>().unwrap_or_else(|_| raw.clone().into()),
            };
            figment = figment.merge((key.as_str(), value));
        }
        let settings: Settings = figment.extract().map_err(|e| {
            e.into_iter().map(|e| format!("invalid configuration: {e}")).collect::<Vec<_>>().join("\n")
        })?;
        settings.validate()?;
        Ok(Loaded { settings, warnings })
    }

    /// Ranges that types alone do not express.
    fn validate(&self) -> Result<(), String> {
        const DAY_SECS: u64 = 86_400;
        if self.dialer.carrier == CarrierKind::Sip {
            self.sip.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        }
        let d = &self.dialer;
        let checks = [
            (d.max_concurrent_calls >= 1, "dialer.max_concurrent_calls must be at least 1"),
            (d.calls_per_second >= 1, "dialer.calls_per_second must be at least 1"),
            (d.max_attempts >= 1, "dialer.max_attempts must be at least 1"),
            (d.ring_timeout_secs >= 1, "dialer.ring_timeout_secs must be at least 1"),
            (d.max_call_secs >= 1, "dialer.max_call_secs must be at least 1"),
            ((0.0..=1.0).contains(&self.sim.answer_rate), "sim.answer_rate must be between 0 and 1"),
            ((0.0..=1000.0).contains(&self.sim.time_scale), "sim.time_scale must be between 0 and 1000"),
            (self.api.max_tasks_per_request >= 1, "api.max_tasks_per_request must be at least 1"),
            (self.api.max_body_bytes >= 1024, "api.max_body_bytes must be at least 1024"),
            (self.recordings.failing_after >= 1, "recordings.failing_after must be at least 1"),
            (self.webhook.timeout_secs >= 1, "webhook.timeout_secs must be at least 1"),
            (
                self.webhook.url.is_empty()
                    || self.webhook.url.starts_with("http://")
                    || self.webhook.url.starts_with("https://"),
                "webhook.url must be an http:// or https:// URL",
            ),
            (self.api.request_timeout_secs >= 1, "api.request_timeout_secs must be at least 1"),
            (self.api.max_concurrent_requests >= 1, "api.max_concurrent_requests must be at least 1"),
            // Upper bounds: durations become epoch-millisecond sums, which must not overflow.
            (d.retry_delay_secs <= 30 * DAY_SECS, "dialer.retry_delay_secs must be at most 30 days"),
            (d.ring_timeout_secs <= 600, "dialer.ring_timeout_secs must be at most 600"),
            (d.max_call_secs <= DAY_SECS, "dialer.max_call_secs must be at most a day (86400)"),
            (d.shutdown_grace_secs <= 3600, "dialer.shutdown_grace_secs must be at most 3600"),
            (self.webhook.max_age_secs <= 30 * DAY_SECS, "webhook.max_age_secs must be at most 30 days"),
            (self.webhook.timeout_secs <= 600, "webhook.timeout_secs must be at most 600"),
            (self.api.request_timeout_secs <= 3600, "api.request_timeout_secs must be at most 3600"),
            (self.api.body_read_timeout_secs >= 1, "api.body_read_timeout_secs must be at least 1"),
            (self.api.body_read_timeout_secs <= 3600, "api.body_read_timeout_secs must be at most 3600"),
            (self.server.header_read_timeout_secs >= 1, "server.header_read_timeout_secs must be at least 1"),
            (
                self.server.header_read_timeout_secs <= 3600,
                "server.header_read_timeout_secs must be at most 3600",
            ),
            (self.server.max_connections >= 1, "server.max_connections must be at least 1"),
            (self.server.max_connections <= 1_048_576, "server.max_connections must be at most 1048576"),
            (
                self.auth.api_keys.iter().all(|k| !k.trim().is_empty() && k.trim() == k),
                "auth.api_keys: a key must not be empty, blank, or start or end with white space",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(format!("invalid configuration: {why}")),
            None => Ok(()),
        }
    }
}

fn lookup<'a>(v: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

/// Every leaf key of the settings, dotted (`dialer.max_attempts`).
fn known_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", &serde_json::to_value(Settings::default()).expect("settings serialize"), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn with_nothing_given_the_embedded_defaults_apply() {
        let s = Settings::load_from(None, None, &[]).unwrap().settings;
        assert_eq!(s.server.bind, "127.0.0.1:8899");
        assert_eq!(s.database.url, "sqlite://data/callcenter.db");
        assert_eq!(s.timezone.0, chrono_tz::Asia::Shanghai);
        assert_eq!(s.dialer.node_id.0, "01");
        assert!(s.dialer.calling_hours.is_always());
    }

    #[test]
    fn the_shipped_default_file_matches_the_embedded_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let s = Settings::load_from(Some(&shipped), None, &[]).unwrap().settings;
        assert_eq!(serde_json::to_value(&s).unwrap(), serde_json::to_value(Settings::default()).unwrap());
    }

    #[test]
    fn a_config_file_then_the_environment_override_the_defaults() {
        let f = file("timezone = \"UTC\"\n[dialer]\nmax_attempts = 5\nnode_id = \"07\"\n");
        let vars = env(&[("CALLCENTER__DIALER__MAX_ATTEMPTS", "9"), ("CALLCENTER__DIALER__NODE_ID", "02")]);
        let s = Settings::load_from(None, Some(f.path()), &vars).unwrap().settings;
        assert_eq!(s.timezone.0, chrono_tz::UTC);
        assert_eq!(s.dialer.max_attempts, 9);
        assert_eq!(s.dialer.node_id.0, "02", "a numeric-looking value stays a string where one belongs");
    }

    #[test]
    fn an_unknown_key_in_a_file_stops_the_start_naming_it() {
        let f = file("[dialer]\nmax_atempts = 5\n");
        let err = Settings::load_from(None, Some(f.path()), &[]).err().unwrap();
        assert!(err.contains("max_atempts"), "{err}");
    }

    #[test]
    fn an_ill_typed_setting_stops_the_start_naming_it() {
        let f = file("[dialer]\nmax_attempts = \"three\"\n");
        let err = Settings::load_from(None, Some(f.path()), &[]).err().unwrap();
        assert!(err.contains("max_attempts"), "{err}");
        let vars = env(&[("CALLCENTER__DIALER__CALLS_PER_SECOND", "fast")]);
        let err = Settings::load_from(None, None, &vars).err().unwrap();
        assert!(err.contains("calls_per_second"), "{err}");
        for (key, value) in [
            ("CALLCENTER__TIMEZONE", "Mars/Olympus"),
            ("CALLCENTER__DIALER__CALLING_HOURS", "8-21"),
            ("CALLCENTER__DIALER__NODE_ID", "1"),
            ("CALLCENTER__DIALER__CALLS_PER_SECOND", "0"),
            ("CALLCENTER__SIM__ANSWER_RATE", "1.5"),
        ] {
            assert!(Settings::load_from(None, None, &env(&[(key, value)])).is_err(), "{key}={value}");
        }
    }

    #[test]
    fn a_blank_api_key_or_a_duration_that_would_overflow_stops_the_start_naming_it() {
        for (text, key) in [
            ("[auth]\napi_keys = [\"\"]\n", "auth.api_keys"),
            ("[auth]\napi_keys = [\"good-key\", \"   \"]\n", "auth.api_keys"),
            ("[auth]\napi_keys = [\" padded \"]\n", "auth.api_keys"),
            ("[dialer]\nretry_delay_secs = 9223372036854775807\n", "dialer.retry_delay_secs"),
            ("[dialer]\nmax_call_secs = 864000\n", "dialer.max_call_secs"),
            ("[webhook]\nmax_age_secs = 9223372036854775807\n", "webhook.max_age_secs"),
            ("[api]\nrequest_timeout_secs = 9223372036854775807\n", "api.request_timeout_secs"),
        ] {
            let f = file(text);
            let err =
                Settings::load_from(None, Some(f.path()), &[]).err().unwrap_or_else(|| panic!("{text}"));
            assert!(err.contains(key), "{text}: {err}");
        }
        let f = file("[auth]\napi_keys = [\"good-key\"]\n[dialer]\nretry_delay_secs = 86400\n");
        assert!(Settings::load_from(None, Some(f.path()), &[]).is_ok());
    }

    #[test]
    fn an_unknown_environment_variable_is_a_warning_not_an_error() {
        let vars = env(&[("CALLCENTER__DIALER__MAX_ATEMPTS", "5"), ("OTHER", "x")]);
        let loaded = Settings::load_from(None, None, &vars).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("CALLCENTER__DIALER__MAX_ATEMPTS"));
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(Settings::load_from(None, Some(Path::new("/nonexistent/cc.toml")), &[]).is_err());
    }

    #[test]
    fn calling_hours_parse_and_contain_their_times() {
        let h = CallingHours::try_from("08:00-21:00".to_string()).unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(h.contains(t(8, 0)) && h.contains(t(20, 59)));
        assert!(!h.contains(t(21, 0)) && !h.contains(t(7, 59)));
        assert_eq!(String::from(h), "08:00-21:00");
        for bad in ["", "08:00", "25:00-26:00", "08:60-09:00", "09:00-09:00"] {
            assert!(CallingHours::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
