use std::fmt;

/// Why a call ended, as the record shows it: `<Q.850 name>:<protocol detail>`,
/// e.g. `USER_BUSY:sip:486`, or `MANAGER_REQUEST:null` when no SIP code exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HangupCause {
    pub name: String,
    pub sip: Option<u16>,
}

impl HangupCause {
    fn new(name: &str, sip: Option<u16>) -> HangupCause {
        HangupCause { name: name.to_string(), sip }
    }

    pub fn normal_clearing() -> HangupCause {
        Self::new("NORMAL_CLEARING", Some(200))
    }
    pub fn user_busy() -> HangupCause {
        Self::new("USER_BUSY", Some(486))
    }
    pub fn no_answer() -> HangupCause {
        Self::new("NO_ANSWER", Some(480))
    }
    pub fn unallocated_number() -> HangupCause {
        Self::new("UNALLOCATED_NUMBER", Some(404))
    }
    pub fn temporary_failure() -> HangupCause {
        Self::new("NORMAL_TEMPORARY_FAILURE", Some(503))
    }
    /// Hung up by stopTasks.
    pub fn manager_request() -> HangupCause {
        Self::new("MANAGER_REQUEST", None)
    }
    /// Hung up because this node shut down.
    pub fn system_shutdown() -> HangupCause {
        Self::new("SYSTEM_SHUTDOWN", None)
    }
    /// The node making the call died; found by another start (lease expired).
    pub fn crash() -> HangupCause {
        Self::new("CRASH", None)
    }
    /// The far end sent no media for `sip.rtp_timeout_secs` (FreeSWITCH's name for it).
    pub fn media_timeout() -> HangupCause {
        Self::new("MEDIA_TIMEOUT", None)
    }
    /// Hung up by this node because it could not renew the call's lease in time (another
    /// node may take the task over), or by the far end's timer for a node gone silent.
    pub fn lease_lost() -> HangupCause {
        Self::new("RECOVERY_ON_TIMER_EXPIRE", None)
    }
    /// The call reached `dialer.max_call_secs`.
    pub fn max_duration() -> HangupCause {
        Self::new("ALLOTTED_TIMEOUT", None)
    }

    /// The Q.850 cause for a SIP final response (RFC 3398 §7.2.4, as FreeSWITCH maps it;
    /// 480 is `NO_ANSWER` as the design settles).
    pub fn from_sip(code: u16) -> HangupCause {
        let name = match code {
            200..=299 => "NORMAL_CLEARING",
            400 | 481 | 500 | 503 => "NORMAL_TEMPORARY_FAILURE",
            401 | 402 | 403 | 407 | 603 => "CALL_REJECTED",
            404 | 485 | 604 => "UNALLOCATED_NUMBER",
            405 | 501 | 505 => "SERVICE_NOT_IMPLEMENTED",
            406 | 415 | 420 | 488 | 606 => "INCOMPATIBLE_DESTINATION",
            408 | 504 => "RECOVERY_ON_TIMER_EXPIRE",
            410 => "NUMBER_CHANGED",
            413 | 414 | 416 => "INTERWORKING",
            480 => "NO_ANSWER",
            483 => "EXCHANGE_ROUTING_ERROR",
            484 => "INVALID_NUMBER_FORMAT",
            486 | 600 => "USER_BUSY",
            487 => "ORIGINATOR_CANCEL",
            502 => "NETWORK_OUT_OF_ORDER",
            _ => "NORMAL_UNSPECIFIED",
        };
        Self::new(name, Some(code))
    }

    /// A cause as another system wrote it (an import, a CDR): `NAME`, `NAME:null` or
    /// `NAME:sip:NNN`, the name in Q.850 style (capitals, digits and `_`, as FreeSWITCH
    /// names them). A name alone means no SIP code.
    pub fn parse(s: &str) -> Result<HangupCause, &'static str> {
        const SHAPE: &str =
            "应为 Q.850 名称（大写字母、数字、_）加 :sip:<三位 SIP 码> 或 :null，如 NORMAL_CLEARING:sip:200";
        let (name, detail) = s.split_once(':').unwrap_or((s, "null"));
        let named = (1..=48).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let sip = match detail {
            "null" => None,
            _ => Some(
                detail
                    .strip_prefix("sip:")
                    .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|c| c.parse().ok())
                    .filter(|c| (100..=699).contains(c))
                    .ok_or(SHAPE)?,
            ),
        };
        if named { Ok(Self::new(name, sip)) } else { Err(SHAPE) }
    }

    /// Worth another attempt later: the line was busy, nobody answered, or the
    /// network failed for now. An unallocated or rejected number is not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.name.as_str(),
            "USER_BUSY"
                | "NO_ANSWER"
                | "NO_USER_RESPONSE"
                | "NORMAL_TEMPORARY_FAILURE"
                | "RECOVERY_ON_TIMER_EXPIRE"
                | "NETWORK_OUT_OF_ORDER"
                | "NORMAL_CIRCUIT_CONGESTION"
                | "SWITCH_CONGESTION"
                | "DESTINATION_OUT_OF_ORDER"
                | "SYSTEM_SHUTDOWN"
                | "CRASH"
        )
    }
}

/// The outcome class of an ended call, a small fixed set for metrics and statistics:
/// `answered`, `busy`, `no_answer`, `unallocated`, `rejected`, `stopped`, `interrupted`,
/// `failed`. `cause_name` is the Q.850 name (the part of `hangupCause` before `:`).
pub fn outcome_class(cause_name: &str, answered: bool) -> &'static str {
    if answered {
        return "answered";
    }
    OUTCOME_OF_CAUSE.iter().find(|(cause, _)| *cause == cause_name).map_or("failed", |(_, class)| class)
}

/// The class of an unanswered call by its cause; a cause not listed is `failed`. The one
/// table of the mapping: SQL that needs it is written from it.
pub const OUTCOME_OF_CAUSE: [(&str, &str); 11] = [
    ("USER_BUSY", "busy"),
    ("NO_ANSWER", "no_answer"),
    ("NO_USER_RESPONSE", "no_answer"),
    ("ORIGINATOR_CANCEL", "no_answer"),
    ("UNALLOCATED_NUMBER", "unallocated"),
    ("NUMBER_CHANGED", "unallocated"),
    ("INVALID_NUMBER_FORMAT", "unallocated"),
    ("CALL_REJECTED", "rejected"),
    ("MANAGER_REQUEST", "stopped"),
    ("SYSTEM_SHUTDOWN", "interrupted"),
    ("CRASH", "interrupted"),
];

/// Every outcome class, in the order dashboards show them.
pub const OUTCOME_CLASSES: [&str; 8] =
    ["answered", "busy", "no_answer", "unallocated", "rejected", "stopped", "interrupted", "failed"];

impl fmt::Display for HangupCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sip {
            Some(code) => write!(f, "{}:sip:{code}", self.name),
            None => write!(f, "{}:null", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_the_spec_shows() {
        assert_eq!(HangupCause::normal_clearing().to_string(), "NORMAL_CLEARING:sip:200");
        assert_eq!(HangupCause::temporary_failure().to_string(), "NORMAL_TEMPORARY_FAILURE:sip:503");
        assert_eq!(HangupCause::manager_request().to_string(), "MANAGER_REQUEST:null");
    }

    #[test]
    fn parses_what_it_writes_and_refuses_other_shapes() {
        for cause in
            [HangupCause::normal_clearing(), HangupCause::manager_request(), HangupCause::from_sip(603)]
        {
            assert_eq!(HangupCause::parse(&cause.to_string()), Ok(cause));
        }
        assert_eq!(HangupCause::parse("ORIGINATOR_CANCEL"), Ok(HangupCause::new("ORIGINATOR_CANCEL", None)));
        for bad in [
            "",
            "normal_clearing:sip:200",
            "NORMAL_CLEARING:sip:2000",
            "NORMAL_CLEARING:sip:+20",
            "NORMAL_CLEARING:sip:999",
            "NORMAL_CLEARING:sip:",
            "NORMAL_CLEARING:",
            "NORMAL CLEARING:null",
            "NORMAL_CLEARING:null:x",
            "A\u{0}B:null",
            &"X".repeat(49),
        ] {
            assert!(HangupCause::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn maps_sip_answers_to_q850_names() {
        assert_eq!(HangupCause::from_sip(486), HangupCause::user_busy());
        assert_eq!(HangupCause::from_sip(480), HangupCause::no_answer());
        assert_eq!(HangupCause::from_sip(404), HangupCause::unallocated_number());
        assert_eq!(HangupCause::from_sip(503), HangupCause::temporary_failure());
        assert_eq!(HangupCause::from_sip(603).to_string(), "CALL_REJECTED:sip:603");
    }

    #[test]
    fn unallocated_numbers_are_never_retried() {
        assert!(HangupCause::user_busy().is_retryable());
        assert!(HangupCause::no_answer().is_retryable());
        assert!(HangupCause::temporary_failure().is_retryable());
        assert!(!HangupCause::unallocated_number().is_retryable());
        assert!(!HangupCause::normal_clearing().is_retryable());
    }
}
