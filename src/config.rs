//! The settings: one section per part of the server, each defined by the module it
//! configures, composed and loaded here. Defaults are built in; `config/default.toml`
//! (when present in the working directory), then `--config FILE`, then
//! `CALLCENTER__SECTION__KEY` variables overlay them. Unknown keys in a file stop the
//! start; unknown variables are warned about.

use std::collections::BTreeSet;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::agent::AgentSettings;
use crate::api::{ApiSettings, AuthSettings};
use crate::dialer::{DialerSettings, InboundSettings, TransferSettings};
use crate::domain::Timezone;
use crate::logging::LogSettings;
use crate::recording::RecordingSettings;
use crate::server::ServerSettings;
use crate::store::DatabaseSettings;
use crate::telephony::CarrierKind;
use crate::telephony::asr::{AsrEngine, AsrSettings};
use crate::telephony::freeswitch::FreeswitchSettings;
use crate::telephony::sim::SimSettings;
use crate::telephony::sip::SipSettings;
use crate::telephony::tts::TtsSettings;
use crate::webhook::WebhookSettings;

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
    pub inbound: InboundSettings,
    pub transfer: TransferSettings,
    pub sim: SimSettings,
    pub sip: SipSettings,
    pub freeswitch: FreeswitchSettings,
    pub tts: TtsSettings,
    pub asr: AsrSettings,
    pub agent: AgentSettings,
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
        let mut settings: Settings = figment.extract().map_err(|e| {
            e.into_iter().map(|e| format!("invalid configuration: {e}")).collect::<Vec<_>>().join("\n")
        })?;
        warnings.extend(settings.take_moved_keys());
        settings.validate()?;
        Ok(Loaded { settings, warnings })
    }

    /// Keys that moved keep working where they used to be: their value goes to the new key
    /// (unless that one is set), with a warning to move it.
    fn take_moved_keys(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let d = TtsSettings::default();
        let (w, s, t) = (&mut warnings, &mut self.sip, &mut self.tts);
        moved(w, ["sip.tts_engine", "tts.engine"], &mut s.tts_engine, &mut t.engine, &d.engine);
        moved(w, ["sip.tts_command", "tts.command"], &mut s.tts_command, &mut t.command, &d.command);
        moved(
            w,
            ["sip.espeak_voice", "tts.espeak_voice"],
            &mut s.espeak_voice,
            &mut t.espeak_voice,
            &d.espeak_voice,
        );
        moved(
            w,
            ["sip.espeak_speed", "tts.espeak_speed"],
            &mut s.espeak_speed,
            &mut t.espeak_speed,
            &d.espeak_speed,
        );
        let d = AsrSettings::default();
        let (s, a) = (&mut self.sip, &mut self.asr);
        moved(
            w,
            ["sip.vad_threshold", "asr.vad_threshold"],
            &mut s.vad_threshold,
            &mut a.vad_threshold,
            &d.vad_threshold,
        );
        moved(
            w,
            ["sip.vad_silence_ms", "asr.vad_silence_ms"],
            &mut s.vad_silence_ms,
            &mut a.vad_silence_ms,
            &d.vad_silence_ms,
        );
        let one_trunk = self.sip.one_trunk_keys_set();
        if !one_trunk.is_empty() && self.sip.trunks.is_empty() {
            warnings.push(format!(
                "{} deprecated: describe the trunk as [[sip.trunks]] (address, transport, domain, username, \
                 password, caller_ids, dial_prefix)",
                match one_trunk.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ));
        }
        if !self.sip.asr_command.is_empty() {
            warnings.push(
                "sip.asr_command is deprecated: set asr.engine = \"command\" and asr.command instead".into(),
            );
            if self.asr.engine == AsrEngine::None {
                self.asr.engine = AsrEngine::Command;
                self.asr.command = std::mem::take(&mut self.sip.asr_command);
            }
        }
        warnings
    }

    /// Ranges that types alone do not express.
    fn validate(&self) -> Result<(), String> {
        const DAY_SECS: u64 = 86_400;
        if self.dialer.carrier == CarrierKind::Sip {
            self.sip.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        }
        if self.dialer.carrier == CarrierKind::Freeswitch {
            self.freeswitch.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        }
        self.asr.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        if self.dialer.carrier == CarrierKind::Sip {
            self.tts.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        }
        self.agent.script.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        self.inbound
            .validate(self.dialer.max_concurrent_calls)
            .map_err(|why| format!("invalid configuration: {why}"))?;
        self.transfer.validate().map_err(|why| format!("invalid configuration: {why}"))?;
        let d = &self.dialer;
        let checks = [
            (d.max_concurrent_calls >= 1, "dialer.max_concurrent_calls must be at least 1"),
            (d.calls_per_second >= 1, "dialer.calls_per_second must be at least 1"),
            (d.max_attempts >= 1, "dialer.max_attempts must be at least 1"),
            (d.ring_timeout_secs >= 1, "dialer.ring_timeout_secs must be at least 1"),
            (d.max_call_secs >= 1, "dialer.max_call_secs must be at least 1"),
            ((0.0..=1.0).contains(&self.sim.answer_rate), "sim.answer_rate must be between 0 and 1"),
            ((0.0..=1000.0).contains(&self.sim.time_scale), "sim.time_scale must be between 0 and 1000"),
            (
                (0.0..=6000.0).contains(&self.sim.inbound_calls_per_minute),
                "sim.inbound_calls_per_minute must be between 0 and 6000",
            ),
            (self.api.max_tasks_per_request >= 1, "api.max_tasks_per_request must be at least 1"),
            (self.api.max_body_bytes >= 1024, "api.max_body_bytes must be at least 1024"),
            (self.recordings.failing_after >= 1, "recordings.failing_after must be at least 1"),
            (
                (60..=5000).contains(&self.agent.barge_in_min_speech_ms),
                "agent.barge_in_min_speech_ms must be between 60 and 5000",
            ),
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

/// A key that moved, whose default is the same at both places: a value set at the old one
/// (other than the default) goes to the new one, unless that is set too; either way, a
/// warning to move it.
fn moved<T: PartialEq + Clone>(
    warnings: &mut Vec<String>,
    [from, to]: [&str; 2],
    old: &mut T,
    new: &mut T,
    default: &T,
) {
    if old == default {
        return;
    }
    warnings.push(format!("{from} is deprecated: set {to} instead"));
    if new == default {
        *new = std::mem::replace(old, default.clone());
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
    fn inbound_numbers_load_from_a_file_and_bad_ones_stop_the_start() {
        let f = file(
            "[inbound]\nreserved_calls = 2\nallow = [\"10.0.0.0/8\"]\n\
             [[inbound.numbers]]\nnumber = \"4008001234\"\nticket_type = \"售后\"\ntransfer_to = \"8001\"\n\
             [[inbound.numbers]]\nnumber = \"*\"\n",
        );
        let s = Settings::load_from(None, Some(f.path()), &[]).unwrap().settings;
        assert_eq!(s.inbound.reserved_calls, 2);
        assert_eq!(s.inbound.numbers.len(), 2);
        assert_eq!(s.inbound.numbers[0].transfer_to.as_deref(), Some("8001"));
        assert_eq!(s.inbound.numbers[1].transfer_to, None);
        assert_eq!(s.inbound.numbers[1].greeting, crate::dialer::InboundNumber::default().greeting);
        let f = file("[inbound]\nreserved_calls = 30\n[[inbound.numbers]]\nnumber = \"1\"\n");
        let err = Settings::load_from(None, Some(f.path()), &[]).err().unwrap();
        assert!(err.contains("inbound.reserved_calls"), "{err}");
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
    fn a_moved_key_keeps_working_with_a_warning_to_move_it() {
        let f = file("[sip]\nasr_command = [\"recognize\", \"{wav}\"]\n");
        let loaded = Settings::load_from(None, Some(f.path()), &[]).unwrap();
        assert_eq!(loaded.settings.asr.engine, AsrEngine::Command);
        assert_eq!(loaded.settings.asr.command, ["recognize", "{wav}"]);
        assert!(
            loaded.warnings.iter().any(|w| w.contains("sip.asr_command is deprecated")),
            "{:?}",
            loaded.warnings
        );

        // The new key wins where both are set.
        let f = file(
            "[sip]\nasr_command = [\"old\"]\n[asr]\nengine = \"openai\"\nurl = \"http://asr:8080/v1\"\n",
        );
        let loaded = Settings::load_from(None, Some(f.path()), &[]).unwrap();
        assert_eq!(loaded.settings.asr.engine, AsrEngine::Openai);
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn the_voice_moved_from_sip_to_tts_and_its_old_keys_still_work() {
        let f = file(
            "[sip]\ntts_engine = \"command\"\ntts_command = [\"say\", \"{text}\"]\nespeak_speed = 120\n",
        );
        let loaded = Settings::load_from(None, Some(f.path()), &[]).unwrap();
        let tts = &loaded.settings.tts;
        assert_eq!(tts.engine, crate::telephony::tts::TtsEngine::Command);
        assert_eq!(tts.command, ["say", "{text}"]);
        assert_eq!(tts.espeak_speed, 120);
        assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings.iter().all(|w| w.contains("is deprecated: set tts.")),
            "{:?}",
            loaded.warnings
        );
        let vars = env(&[("CALLCENTER__SIP__ESPEAK_VOICE", "en-us")]);
        assert_eq!(Settings::load_from(None, None, &vars).unwrap().settings.tts.espeak_voice, "en-us");
    }

    #[test]
    fn the_one_trunk_keys_still_work_with_a_warning_and_trunks_are_read_from_tables() {
        let f = file("[dialer]\ncarrier = \"sip\"\n[sip]\ntrunk = \"10.0.0.1:5080\"\nusername = \"alice\"\n");
        let loaded = Settings::load_from(None, Some(f.path()), &[]).unwrap();
        assert_eq!(loaded.settings.sip.trunk_list()[0].address, "10.0.0.1:5080");
        assert_eq!(
            loaded.warnings,
            [
                "sip.trunk, sip.username are deprecated: describe the trunk as [[sip.trunks]] (address, transport, \
              domain, username, password, caller_ids, dial_prefix)"
            ]
        );

        let f = file(
            "[dialer]\ncarrier = \"sip\"\n[[sip.trunks]]\nname = \"a\"\naddress = \"10.0.0.1\"\nweight = 2\n\
             [[sip.trunks]]\nname = \"b\"\naddress = \"10.0.0.2\"\nprefixes = [\"139\"]\nmax_concurrent_calls = 5\n",
        );
        let loaded = Settings::load_from(None, Some(f.path()), &[]).unwrap();
        let trunks = loaded.settings.sip.trunk_list();
        assert_eq!(trunks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((trunks[0].weight, trunks[1].weight, trunks[1].max_concurrent_calls), (2, 1, 5));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        let f = file(
            "[dialer]\ncarrier = \"sip\"\n[[sip.trunks]]\naddress = \"10.0.0.1\"\nprefixes = [\"1x\"]\n",
        );
        let e = Settings::load_from(None, Some(f.path()), &[]).err().unwrap();
        assert!(e.contains("sip.trunks[0].prefixes"), "{e}");
    }

    #[test]
    fn the_vad_moved_from_sip_to_asr_and_its_old_keys_still_work() {
        let f = file("[sip]\nvad_silence_ms = 500\n");
        let loaded = Settings::load_from(None, Some(f.path()), &[]).unwrap();
        assert_eq!(loaded.settings.asr.vad_silence_ms, 500);
        assert_eq!(loaded.settings.asr.vad_threshold, 400);
        assert_eq!(loaded.warnings, ["sip.vad_silence_ms is deprecated: set asr.vad_silence_ms instead"]);
        let f = file("[asr]\nvad_silence_ms = 50\n");
        let err = Settings::load_from(None, Some(f.path()), &[]).err().unwrap();
        assert!(err.contains("asr.vad_silence_ms"), "{err}");
    }

    #[test]
    fn freeswitch_audio_streaming_needs_an_address_freeswitch_can_reach() {
        let with = |audio: &str| {
            let text = format!("[dialer]\ncarrier = \"freeswitch\"\n[freeswitch]\n{audio}\n");
            Settings::load_from(None, Some(file(&text).path()), &[]).map(|_| ())
        };
        assert_eq!(with(""), Ok(()), "no stream: nothing to check");
        assert_eq!(with("audio_listen = \"127.0.0.1:8091\""), Ok(()));
        assert_eq!(with("audio_listen = \"0.0.0.0:8091\"\naudio_url = \"ws://cc.internal:8091\""), Ok(()));
        for (audio, key) in [
            ("audio_listen = \"8091\"", "freeswitch.audio_listen"),
            ("audio_listen = \"0.0.0.0:8091\"", "freeswitch.audio_url"),
            ("audio_listen = \"127.0.0.1:8091\"\naudio_url = \"http://cc:8091\"", "freeswitch.audio_url"),
            ("audio_module = \"mod_audio_magic\"", "audio_module"),
        ] {
            let err = with(audio).unwrap_err();
            assert!(err.contains(key), "{audio}: {err}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(Settings::load_from(None, Some(Path::new("/nonexistent/cc.toml")), &[]).is_err());
    }
}
