//! Field deserializers that accept what the Java clients' Jackson accepts (an integer as
//! a number or a numeric string, a number where a string belongs, null for absent) and
//! say in Chinese what was wrong otherwise.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn as_int(v: &Value) -> Result<Option<i64>, String> {
    let too_big = || "超出整数范围".to_string();
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
            (None, Some(f)) if f.fract() == 0.0 => Err(too_big()),
            _ => Err("应为整数".into()),
        },
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Some(i)),
            Err(_) if s.trim().bytes().all(|b| b.is_ascii_digit() || b == b'-') => Err(too_big()),
            Err(_) => Err(format!("应为整数，收到 \"{}\"", clip(s))),
        },
        _ => Err("应为整数".into()),
    }
}

fn as_string(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err("应为字符串".into()),
    }
}

/// Shows a bad value back to the caller without echoing a whole payload.
pub fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(32).collect();
    if s.chars().count() > 32 {
        out.push('…');
    }
    out
}

pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    as_int(&Value::deserialize(d)?).map_err(D::Error::custom)
}

pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    as_string(&Value::deserialize(d)?).map_err(D::Error::custom)
}

/// A list of integers; null or absent is empty.
pub fn int_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    list(d, as_int, "应为整数数组")
}

/// A list of strings; null or absent is empty.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, as_string, "应为字符串数组")
}

fn list<'de, D: Deserializer<'de>, T>(
    d: D,
    item: fn(&Value) -> Result<Option<T>, String>,
    expected: &str,
) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match item(v) {
                Ok(Some(x)) => Some(Ok(x)),
                Ok(None) => None,
                Err(e) => Some(Err(D::Error::custom(format!("第 {} 项{e}", i + 1)))),
            })
            .collect(),
        _ => Err(D::Error::custom(expected)),
    }
}

/// A required text field: not blank, at most `max_chars` characters, and no control
/// characters but tab and line breaks (a NUL cannot even be stored in PostgreSQL).
/// The error says what is wrong, for "<field> <error>".
pub fn required_text(v: Option<String>, max_chars: usize) -> Result<String, String> {
    let s = v.filter(|s| !s.trim().is_empty()).ok_or("不能为空")?;
    if s.chars().count() > max_chars {
        return Err(format!("过长，最多 {max_chars} 个字符"));
    }
    if s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err("不能包含控制字符".into());
    }
    Ok(s)
}

/// A filter string: blank means no filter, as the RuoYi front ends send it.
pub fn filter(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_arrive_as_numbers_or_numeric_strings() {
        assert_eq!(as_int(&json!(5)), Ok(Some(5)));
        assert_eq!(as_int(&json!("5")), Ok(Some(5)));
        assert_eq!(as_int(&json!(" 7 ")), Ok(Some(7)));
        assert_eq!(as_int(&json!(2.0)), Ok(Some(2)));
        assert_eq!(as_int(&json!("")), Ok(None));
        assert_eq!(as_int(&json!(null)), Ok(None));
        assert!(as_int(&json!("abc")).is_err());
        assert!(as_int(&json!(1.5)).is_err());
        assert!(as_int(&json!(true)).is_err());
        assert!(as_int(&json!([1])).is_err());
        assert_eq!(as_int(&json!("99999999999999999999")), Err("超出整数范围".into()));
    }

    #[test]
    fn required_text_refuses_blank_long_and_control_characters() {
        assert_eq!(required_text(Some("张三".into()), 10), Ok("张三".into()));
        assert_eq!(required_text(Some("a\nb\tc".into()), 10), Ok("a\nb\tc".into()));
        assert!(required_text(Some("  ".into()), 10).is_err());
        assert!(required_text(None, 10).is_err());
        assert!(required_text(Some("abcdef".into()), 5).is_err());
        assert!(required_text(Some("a\u{0}b".into()), 10).is_err());
        assert!(required_text(Some("a\u{1b}[31m".into()), 10).is_err());
    }

    #[test]
    fn strings_accept_numbers_but_not_objects() {
        assert_eq!(as_string(&json!("a")), Ok(Some("a".into())));
        assert_eq!(as_string(&json!(13912345678u64)), Ok(Some("13912345678".into())));
        assert!(as_string(&json!({})).is_err());
        assert!(as_string(&json!(false)).is_err());
    }
}
