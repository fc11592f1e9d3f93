//! Paging and time-range parameters shared by the list endpoints.

use super::ApiError;
use crate::domain::{ApiTime, Page};

/// `pageNum` ≥ 1 and `pageSize` 1…1000. With `defaults`, absent values take them;
/// without, both are required.
pub fn page(num: Option<i64>, size: Option<i64>, defaults: Option<(i64, i64)>) -> Result<Page, ApiError> {
    let required = |name: &str| ApiError::bad(format!("{name} 不能为空"));
    let num = num.or(defaults.map(|d| d.0)).ok_or_else(|| required("pageNum"))?;
    let size = size.or(defaults.map(|d| d.1)).ok_or_else(|| required("pageSize"))?;
    if !(1..=i64::from(u32::MAX)).contains(&num) {
        return Err(ApiError::bad(format!("pageNum 应为不小于 1 的整数，收到 {num}")));
    }
    if !(1..=i64::from(Page::MAX_SIZE)).contains(&size) {
        return Err(ApiError::bad(format!("pageSize 应在 1 到 {} 之间，收到 {size}", Page::MAX_SIZE)));
    }
    Ok(Page { num: num as u32, size: size as u32 })
}

/// An inclusive `yyyy-MM-dd HH:mm:ss` range as epoch ms: `[from, until)`.
pub fn time_range(
    time: &ApiTime,
    (start_name, start): (&str, Option<String>),
    (end_name, end): (&str, Option<String>),
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let parse = |name: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        match super::lenient::filter(v) {
            None => Ok(None),
            Some(s) => time
                .parse(&s)
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("{name} 格式应为 yyyy-MM-dd HH:mm:ss，收到 \"{s}\""))),
        }
    };
    let from = parse(start_name, start)?;
    let until = parse(end_name, end)?.map(|ms| ms + 1000);
    if let (Some(f), Some(u)) = (from, until)
        && f >= u
    {
        return Err(ApiError::bad(format!("{start_name} 不能晚于 {end_name}")));
    }
    Ok((from, until))
}
