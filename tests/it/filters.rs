//! records/list and calltask/list under random combinations of every filter, on any page,
//! over a seeded database: each page and each total must equal what a plain
//! `SELECT … WHERE … ORDER BY … LIMIT/OFFSET` and `COUNT(*)` give on the same rows — on the
//! seeded rows (every AI call and task in the default campaign), then again after imports,
//! after FreeSWITCH CDRs and after AI calls of tasks in campaigns of their own.
//!
//! The seed is `CALLCENTER_FILTERS_RECORDS` call records (default 300,000) and a tenth as
//! many tasks; `CALLCENTER_FILTERS_CASES` sets the random cases per list and round
//! (default 60).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use callcenter::domain::Timezone;
use callcenter::store::StoreOptions;

use crate::common::{Plain, TestDb, TestServer, test_settings, ticket};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Values the filters pick from: some of the stored ones, and some stored nowhere.
struct Samples {
    uuids: Vec<String>,
    phones: Vec<String>,
    extnums: Vec<String>,
    /// Campaigns of tasks and of records.
    campaigns: Vec<String>,
    batch_ids: Vec<i64>,
    tickets: Vec<String>,
    task_phones: Vec<String>,
    /// The span the rows' times fall in, epoch ms.
    from_ms: i64,
    until_ms: i64,
}

impl Samples {
    async fn take(plain: &Plain) -> Samples {
        let mut uuids = plain.texts("SELECT uuid FROM call_records ORDER BY callout_ms DESC LIMIT 40").await;
        uuids.extend(plain.texts("SELECT uuid FROM call_records ORDER BY uuid LIMIT 20").await);
        uuids.push("not-a-stored-uuid".into());
        let mut phones =
            plain.texts("SELECT telephone FROM call_records ORDER BY callout_ms DESC LIMIT 40").await;
        phones.push("13000000000".into());
        let mut extnums = plain
            .texts(
                "SELECT DISTINCT extnum FROM call_records WHERE extnum IS NOT NULL ORDER BY extnum LIMIT 30",
            )
            .await;
        extnums.push("9999".into());
        let mut campaigns = plain
            .texts(
                "SELECT batch_name FROM tasks UNION SELECT batch_name FROM call_records WHERE batch_name IS NOT NULL
                 ORDER BY 1",
            )
            .await;
        campaigns.push("no-such-campaign".into());
        let mut batch_ids = plain.ints("SELECT batch_id FROM tasks ORDER BY batch_id DESC LIMIT 40").await;
        batch_ids.push(1);
        let mut tickets = plain.texts("SELECT ticket_no FROM tasks ORDER BY batch_id DESC LIMIT 40").await;
        tickets.push("NO-SUCH-TICKET".into());
        let mut task_phones = plain.texts("SELECT phone FROM tasks ORDER BY batch_id DESC LIMIT 40").await;
        task_phones.push("13000000000".into());
        let from_ms = plain.count("SELECT MIN(callout_ms) FROM call_records").await;
        let until_ms = plain.count("SELECT MAX(callout_ms) FROM call_records").await + 1;
        Samples { uuids, phones, extnums, campaigns, batch_ids, tickets, task_phones, from_ms, until_ms }
    }
}

/// A bound of a time range: where in the data's span (0..=1 and a little beyond), and
/// how it is rounded (to the local day, the hour, the minute, or not at all).
#[derive(Debug, Clone, Copy)]
struct Bound {
    at: f64,
    round: u8,
}

fn bound() -> impl Strategy<Value = Option<Bound>> {
    prop::option::weighted(0.6, (-0.05f64..1.05, 0u8..4).prop_map(|(at, round)| Bound { at, round }))
}

/// A second of local time `b` stands for (the API's times are whole seconds).
fn second_of(b: Bound, s: &Samples, tz: Tz) -> i64 {
    let ms = s.from_ms + ((s.until_ms - s.from_ms) as f64 * b.at) as i64;
    let t = tz.timestamp_millis_opt(ms).unwrap();
    let secs = t.timestamp();
    let local_secs = secs + i64::from(chrono::Offset::fix(t.offset()).local_minus_utc());
    let unit = [86_400, 3_600, 60, 1][b.round as usize];
    (secs - local_secs.rem_euclid(unit)) * 1000
}

fn api_time(ms: i64, tz: Tz) -> String {
    Utc.timestamp_millis_opt(ms).unwrap().with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The instant the API reads from `ms`'s local time: `ms` itself, but in the hour a zone
/// repeats when its summer time ends, the first of the two (the "in another zone" round runs
/// in New York: a bound at 01:30 on the first Sunday of November names 05:30 UTC).
fn as_sent(ms: i64, tz: Tz) -> i64 {
    local_ms(&api_time(ms, tz), tz)
}

/// A talk-time bound: the interesting edges of the counters' buckets, and any value.
fn talk() -> impl Strategy<Value = Option<i64>> {
    prop::option::weighted(
        0.5,
        prop_oneof![
            prop::sample::select(vec![
                0, 1, 4, 5, 7, 14, 15, 16, 29, 30, 59, 60, 61, 100, 119, 120, 121, 200, 299, 300, 899, 900,
                3599, 3600, 5000
            ]),
            0i64..260,
        ],
    )
}

/// Which page: a shallow one, or one at a share of the total (past the end included).
#[derive(Debug, Clone, Copy)]
struct PageAt {
    size: i64,
    shallow: Option<u32>,
    depth: f64,
}

fn page_at() -> impl Strategy<Value = PageAt> {
    (prop::sample::select(vec![1i64, 5, 10, 37, 100]), prop::option::weighted(0.5, 1u32..4), 0.0f64..1.1)
        .prop_map(|(size, shallow, depth)| PageAt { size, shallow, depth })
}

impl PageAt {
    /// (pageNum, offset) given the plain total.
    fn resolve(self, total: i64) -> (i64, i64) {
        let num = match self.shallow {
            Some(n) => i64::from(n),
            None => 1 + (total as f64 * self.depth) as i64 / self.size,
        };
        (num, (num - 1) * self.size)
    }
}

#[derive(Debug, Clone)]
struct RecordCase {
    call_type: &'static str,
    uuid: Option<Index>,
    phone: Option<Index>,
    extnum: Option<Index>,
    campaign: Option<Index>,
    from: Option<Bound>,
    until: Option<Bound>,
    talk: (Option<i64>, Option<i64>),
    page: PageAt,
}

fn record_case() -> impl Strategy<Value = RecordCase> {
    (
        prop::sample::select(vec!["01", "02", "03"]),
        prop::option::weighted(0.05, any::<Index>()),
        prop::option::weighted(0.08, any::<Index>()),
        prop::option::weighted(0.25, any::<Index>()),
        (prop::option::weighted(0.4, any::<Index>()), prop::bool::weighted(0.8)),
        (bound(), bound()),
        (talk(), talk()),
        page_at(),
    )
        .prop_map(|(call_type, uuid, phone, extnum, (campaign, ai), (from, until), (a, b), page)| {
            let talk = match (a, b) {
                (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
                t => t,
            };
            // A campaign's calls are AI calls: mostly look for those.
            let call_type = if campaign.is_some() && ai { "02" } else { call_type };
            RecordCase { call_type, uuid, phone, extnum, campaign, from, until, talk, page }
        })
}

/// Runs one records/list case against the API and the plain SQL.
async fn check_records(
    s: &TestServer,
    plain: &Plain,
    samples: &Samples,
    c: &RecordCase,
) -> Result<(), String> {
    let tz = s.settings.timezone.0;
    let mut body = json!({"callType": c.call_type});
    let mut wheres = vec![format!("call_type = '{}'", c.call_type)];
    let picks =
        [("uuid", "uuid", c.uuid, &samples.uuids), ("telephone", "telephone", c.phone, &samples.phones)];
    for (field, column, pick, values) in picks.into_iter().chain([
        ("extnum", "extnum", c.extnum, &samples.extnums),
        ("batchName", "batch_name", c.campaign, &samples.campaigns),
    ]) {
        if let Some(i) = pick {
            let v = i.get(values);
            body[field] = json!(v);
            wheres.push(format!("{column} = '{v}'"));
        }
    }
    let from = c.from.map(|b| as_sent(second_of(b, samples, tz), tz));
    let until = c.until.map(|b| as_sent(second_of(b, samples, tz), tz));
    if let (Some(f), Some(u)) = (from, until)
        && f > u
    {
        return Ok(()); // the API refuses it (another test's matter)
    }
    if let Some(f) = from {
        body["calloutTimeStart"] = json!(api_time(f, tz));
        wheres.push(format!("callout_ms >= {f}"));
    }
    if let Some(u) = until {
        body["calloutTimeEnd"] = json!(api_time(u, tz));
        wheres.push(format!("callout_ms < {}", u + 1000));
    }
    if let Some(t) = c.talk.0 {
        body["timeLenStart"] = json!(t);
        wheres.push(format!("time_len >= {t}"));
    }
    if let Some(t) = c.talk.1 {
        body["timeLenEnd"] = json!(t);
        wheres.push(format!("time_len <= {t}"));
    }
    let wheres = wheres.join(" AND ");
    let total = plain.count(&format!("SELECT COUNT(*) FROM call_records WHERE {wheres}")).await;
    let (num, offset) = c.page.resolve(total);
    body["pageNum"] = json!(num);
    body["pageSize"] = json!(c.page.size);
    let expected = plain
        .texts(&format!(
            "SELECT uuid FROM call_records WHERE {wheres} ORDER BY callout_ms DESC, uuid DESC LIMIT {} OFFSET {offset}",
            c.page.size
        ))
        .await;
    let answer = s.records(body.clone()).await;
    let got: Vec<String> =
        answer["rows"].as_array().unwrap().iter().map(|r| r["uuid"].as_str().unwrap().to_string()).collect();
    if answer["total"] != json!(total) || got != expected {
        return Err(format!(
            "{body}\n  total {} (plain {total})\n  page {got:?}\n  plain {expected:?}",
            answer["total"]
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct TaskCase {
    batch_id: Option<Index>,
    ticket: Option<Index>,
    phone: Option<Index>,
    campaign: Option<Index>,
    status: Option<(&'static str, &'static str)>,
    from: Option<Bound>,
    until: Option<Bound>,
    page: PageAt,
}

fn task_case() -> impl Strategy<Value = TaskCase> {
    let statuses = vec![
        ("待呼叫", "pending"),
        ("呼叫中", "calling"),
        ("等待重呼", "retry_wait"),
        ("已完成", "completed"),
        ("已停止", "stopped"),
        ("已拦截", "blocked"),
    ];
    (
        prop::option::weighted(0.08, any::<Index>()),
        prop::option::weighted(0.08, any::<Index>()),
        prop::option::weighted(0.08, any::<Index>()),
        prop::option::weighted(0.3, any::<Index>()),
        prop::option::weighted(0.4, prop::sample::select(statuses)),
        bound(),
        bound(),
        page_at(),
    )
        .prop_map(|(batch_id, ticket, phone, campaign, status, from, until, page)| TaskCase {
            batch_id,
            ticket,
            phone,
            campaign,
            status,
            from,
            until,
            page,
        })
}

async fn check_tasks(s: &TestServer, plain: &Plain, samples: &Samples, c: &TaskCase) -> Result<(), String> {
    let tz = s.settings.timezone.0;
    let mut body = json!({});
    let mut wheres = vec!["1 = 1".to_string()];
    if let Some(i) = c.batch_id {
        let id = *i.get(&samples.batch_ids);
        body["batchId"] = json!(id);
        wheres.push(format!("batch_id = {id}"));
    }
    for (field, column, pick, values) in [
        ("ticketNo", "ticket_no", c.ticket, &samples.tickets),
        ("phone", "phone", c.phone, &samples.task_phones),
        ("batchName", "batch_name", c.campaign, &samples.campaigns),
    ] {
        if let Some(i) = pick {
            let v = i.get(values);
            body[field] = json!(v);
            wheres.push(format!("{column} = '{v}'"));
        }
    }
    if let Some((label, name)) = c.status {
        body["status"] = json!(label);
        wheres.push(format!("status = '{name}'"));
    }
    // Tasks were created over the same 90 days as the records.
    let from = c.from.map(|b| as_sent(second_of(b, samples, tz), tz));
    let until = c.until.map(|b| as_sent(second_of(b, samples, tz), tz));
    if let (Some(f), Some(u)) = (from, until)
        && f > u
    {
        return Ok(());
    }
    if let Some(f) = from {
        body["createTimeStart"] = json!(api_time(f, tz));
        wheres.push(format!("created_ms >= {f}"));
    }
    if let Some(u) = until {
        body["createTimeEnd"] = json!(api_time(u, tz));
        wheres.push(format!("created_ms < {}", u + 1000));
    }
    let wheres = wheres.join(" AND ");
    let total = plain.count(&format!("SELECT COUNT(*) FROM tasks WHERE {wheres}")).await;
    let (num, offset) = c.page.resolve(total);
    body["pageNum"] = json!(num);
    body["pageSize"] = json!(c.page.size);
    let expected = plain
        .ints(&format!(
            "SELECT batch_id FROM tasks WHERE {wheres} ORDER BY batch_id DESC LIMIT {} OFFSET {offset}",
            c.page.size
        ))
        .await;
    let answer = s.tasks(body.clone()).await;
    let got: Vec<i64> =
        answer["rows"].as_array().unwrap().iter().map(|r| r["batchId"].as_i64().unwrap()).collect();
    if answer["total"] != json!(total) || got != expected {
        return Err(format!(
            "{body}\n  total {} (plain {total})\n  page {got:?}\n  plain {expected:?}",
            answer["total"]
        ));
    }
    Ok(())
}

/// Runs `cases` random cases of both lists; a failing case is shrunk to a small one.
async fn check_round(s: &TestServer, plain: &Plain, round: &str) {
    let samples = Samples::take(plain).await;
    let cases = env_or("CALLCENTER_FILTERS_CASES", 60) as u32;
    let runtime = tokio::runtime::Handle::current();
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 200, ..Config::default() };
    let run = |result: Result<(), String>| result.map_err(|e| TestCaseError::fail(format!("{round}: {e}")));
    let mut runner = TestRunner::new(config.clone());
    let outcome = tokio::task::block_in_place(|| {
        runner
            .run(&record_case(), |c| run(runtime.block_on(check_records(s, plain, &samples, &c))))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = outcome {
        panic!("records/list: {e}");
    }
    let mut runner = TestRunner::new(config);
    let outcome = tokio::task::block_in_place(|| {
        runner
            .run(&task_case(), |c| run(runtime.block_on(check_tasks(s, plain, &samples, &c))))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = outcome {
        panic!("calltask/list: {e}");
    }
}

/// Imported calls: at the edges of hours and days, long talks, extensions old and new.
fn imports(batch: u32, s: &Samples, tz: Tz) -> Vec<Value> {
    (0..300u32)
        .map(|i| {
            let n = i64::from(batch * 1000 + i);
            let hour = 3_600_000;
            // Near hour edges, spread over the span.
            let start = (s.from_ms + (s.until_ms - s.from_ms) / 300 * i64::from(i)) / hour * hour
                + [-1000, 0, 1000, 1_799_000][i as usize % 4];
            let talk = [0, 3, 16, 61, 119, 256, 4100, 9000][i as usize % 8] * 1000;
            let answered = talk > 0;
            let call_type = ["01", "03"][i as usize % 2];
            json!({
                "uuid": format!("IMP{batch}-{i}"),
                "telephone": format!("1391234{:04}", n % 50),
                "callType": call_type,
                "calloutTime": api_time(start, tz),
                "answeredTime": if answered { api_time(start, tz) } else { String::new() },
                "callEndTime": api_time(start + talk, tz),
                "hangupCause": if answered { "NORMAL_CLEARING:sip:200" } else { "NO_ANSWER:sip:480" },
                "extnum": format!("8{:03}", n % 7),
            })
        })
        .collect()
}

fn cdr(i: u32, s: &Samples) -> Value {
    let start = (s.until_ms / 1000) - i64::from(i) * 997;
    let talk = [0, 15, 64, 300][i as usize % 4];
    let mut v = json!({
        "uuid": format!("6f1c3b52-8d8e-4a59-9f53-{i:012}"),
        "caller_id_number": "18188888888",
        "destination_number": format!("80{:02}", i % 5),
        "start_epoch": start.to_string(),
        "end_epoch": (start + 2 + talk).to_string(),
        "hangup_cause": if talk > 0 { "NORMAL_CLEARING" } else { "NO_ANSWER" },
        "sip_term_status": if talk > 0 { "200" } else { "480" },
    });
    if talk > 0 {
        v["answer_epoch"] = json!((start + 2).to_string());
    }
    json!({ "variables": v })
}

/// The counters' days are the configured zone's: an extension's calls either side of local
/// midnight, and of UTC midnight (08:00 in Beijing), count in their own local days, whether
/// a range takes whole days of the counters or counts the calls at its edges.
#[tokio::test]
async fn an_extensions_calls_count_in_their_own_local_days() {
    let s = TestServer::start().await;
    let tz = s.settings.timezone.0;
    let day = |d: u32, time: &str| format!("2026-11-{d:02} {time}");
    let times = [
        day(9, "23:59:30"),
        day(10, "00:00:30"),
        day(10, "07:59:30"),
        day(10, "08:00:30"),
        day(10, "23:59:30"),
        day(11, "00:00:30"),
    ];
    let rows: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, time)| {
            json!({"uuid": format!("EXT-{i}"), "telephone": "13912340000", "callType": "01", "calloutTime": time,
                   "answeredTime": time, "callEndTime": time, "hangupCause": "NORMAL_CLEARING:sip:200", "extnum": "8801"})
        })
        .collect();
    let v = s.post("/api/aicall/records/import", &json!(rows)).await;
    assert_eq!(v["code"], 0, "{v}");
    let total = |from: Option<String>, until: Option<String>| {
        let mut body = json!({"callType": "01", "extnum": "8801", "pageNum": 1, "pageSize": 1});
        if let Some(from) = from {
            body["calloutTimeStart"] = json!(from);
        }
        if let Some(until) = until {
            body["calloutTimeEnd"] = json!(until);
        }
        let s = &s;
        async move {
            let v = s.post("/api/aicall/records/list", &body).await;
            assert_eq!(v["code"], 0, "{v}");
            v["total"].as_i64().unwrap()
        }
    };
    let whole = |d: u32| (Some(day(d, "00:00:00")), Some(day(d, "23:59:59")));
    for (range, expected) in [
        (whole(9), 1),
        (whole(10), 4),
        (whole(11), 1),
        ((Some(day(9, "00:00:00")), Some(day(11, "23:59:59"))), 6),
        ((Some(day(10, "00:00:00")), None), 5),
        ((None, Some(day(10, "23:59:59"))), 5),
        ((Some(day(10, "08:00:00")), Some(day(11, "07:59:59"))), 3),
        ((Some(day(9, "12:00:00")), Some(day(11, "00:00:00"))), 5),
        ((None, None), 6),
    ] {
        let (from, until) = range.clone();
        assert_eq!(total(from, until).await, expected, "{range:?} in {tz}");
    }
}

/// An extension's deep pages skip its whole days by their counts (`extension_days`) and
/// walk only within the day they start in: every page past the thousandth call, with and
/// without a range, is the calls in order.
#[tokio::test]
async fn an_extensions_deep_pages_are_its_calls_in_order() {
    let s = TestServer::start().await;
    let tz = s.settings.timezone.0;
    // 1,500 calls 17 minutes apart (about 18 days), two at each time; plus another
    // extension's and another call type's at the same times.
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 3, 0, 0).unwrap().timestamp_millis();
    let time = |i: i64| start + i / 2 * 17 * 60_000;
    let row = |uuid: String, call_type: &str, extnum: &str, ms: i64| {
        json!({"uuid": uuid, "telephone": "13912340000", "callType": call_type, "calloutTime": api_time(ms, tz),
               "answeredTime": "", "callEndTime": api_time(ms, tz), "hangupCause": "NO_ANSWER:sip:480", "extnum": extnum})
    };
    for batch in 0..5 {
        let rows: Vec<Value> = (batch * 300..(batch + 1) * 300)
            .flat_map(|i| {
                [
                    row(format!("DEEP-{i:04}"), "01", "8802", time(i)),
                    row(format!("OTHER-{i:04}"), "01", "8803", time(i)),
                    row(format!("MANUAL-{i:04}"), "03", "8802", time(i)),
                ]
            })
            .collect();
        let v = s.post("/api/aicall/records/import", &json!(rows)).await;
        assert_eq!(v["code"], 0, "{v}");
    }
    // Newest first; two calls of one time by uuid, descending.
    let newest_first: Vec<String> = (0..1500).rev().map(|i| format!("DEEP-{i:04}")).collect();
    let ranges = [
        (None, None, 0..1500),
        // A range from mid-day to mid-day: the calls of its partial days at both ends.
        (Some(time(100) + 1000), Some(time(1400)), 102..1400),
    ];
    for (from, until, calls) in ranges {
        let expected: Vec<&String> =
            newest_first.iter().filter(|u| calls.contains(&u[5..].parse::<i64>().unwrap())).collect();
        for (page, size) in [(101, 10), (120, 11), (137, 10), (139, 10), (1300, 1), (1301, 1), (1500, 1)] {
            let mut body = json!({"callType": "01", "extnum": "8802", "pageNum": page, "pageSize": size});
            if let Some(from) = from {
                body["calloutTimeStart"] = json!(api_time(from, tz));
            }
            if let Some(until) = until {
                // calloutTimeEnd takes its whole second.
                body["calloutTimeEnd"] = json!(api_time(until - 1000, tz));
            }
            assert_records_page(&s, &body, &expected, page, size).await;
        }
    }
}

/// records/list answers `body`, page `page` of `size`, with the total and the page of
/// `expected` (uuids, newest first).
async fn assert_records_page(
    s: &TestServer,
    body: &Value,
    expected: &[impl AsRef<str>],
    page: usize,
    size: usize,
) {
    let v = s.post("/api/aicall/records/list", body).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["total"], expected.len(), "{body}");
    let got: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["uuid"].as_str().unwrap()).collect();
    let offset = ((page - 1) * size).min(expected.len());
    let want: Vec<&str> =
        expected[offset..(offset + size).min(expected.len())].iter().map(|u| u.as_ref()).collect();
    assert_eq!(got, want, "{body}");
}

/// A range's partial hours are counted from whichever side is shorter: the edge's own
/// calls, or its hour's counters less the calls of the rest of the hour; and that side by
/// its whole ten-minute slots, each partial slot again from its shorter side. Edges on both
/// sides of the half hour and of a slot's half, on a slot's edge, to the second, and ranges
/// inside one hour or one slot, with and without a talk-time range, give the exact total
/// and, deep into the range, the calls in order.
#[tokio::test]
async fn a_ranges_edges_count_exactly_from_either_side_of_their_hour() {
    let s = TestServer::start().await;
    let tz = s.settings.timezone.0;
    // Ten calls a minute from 09:00 to 12:59 UTC (2,400), talk times 0 to 199 s.
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap().timestamp_millis();
    let call = |i: i64| (start + i / 10 * 60_000 + i % 10 * 1000, i * 7 % 200);
    for batch in 0..4 {
        let rows: Vec<Value> = (batch * 600..(batch + 1) * 600)
            .map(|i| {
                let (ms, talk) = call(i);
                let answered = if talk > 0 { api_time(ms, tz) } else { String::new() };
                json!({"uuid": format!("EDGE-{i:04}"), "telephone": "13912340000", "callType": "01",
                       "calloutTime": api_time(ms, tz), "answeredTime": answered,
                       "callEndTime": api_time(ms + talk * 1000, tz), "hangupCause": "NORMAL_CLEARING:sip:200"})
            })
            .collect();
        let v = s.post("/api/aicall/records/import", &json!(rows)).await;
        assert_eq!(v["code"], 0, "{v}");
    }
    let minute = |hour: i64, minute: i64| start + (hour - 9) * 3_600_000 + minute * 60_000;
    // [from, until): each edge inside an hour, shorter or longer than half of it.
    let ranges = [
        (minute(9, 10), minute(12, 50)),
        (minute(9, 50), minute(12, 10)),
        (minute(9, 10), minute(12, 10)),
        (minute(10, 40), minute(11, 20)),
        (minute(10, 5), minute(10, 55)),
        (minute(9, 7), minute(12, 43)),
        (minute(9, 33) + 30_000, minute(12, 18)),
        (minute(10, 4), minute(10, 16)),
        (minute(10, 2), minute(10, 8)),
    ];
    for (from, until) in ranges {
        for (talk_from, talk_to) in [(None, None), (Some(1), None), (Some(60), Some(120))] {
            // Newest first; calls of one time by uuid, descending.
            let expected: Vec<String> = (0..2400)
                .rev()
                .filter(|&i| {
                    let (ms, talk) = call(i);
                    (from..until).contains(&ms)
                        && talk_from.is_none_or(|t| talk >= t)
                        && talk_to.is_none_or(|t| talk <= t)
                })
                .map(|i| format!("EDGE-{i:04}"))
                .collect();
            for (page, size) in [(1, 10), (101, 10), (112, 10), (150, 10), (1000, 1)] {
                let mut body = json!({"callType": "01", "calloutTimeStart": api_time(from, tz),
                                      "calloutTimeEnd": api_time(until - 1000, tz), "pageNum": page, "pageSize": size});
                if let Some(t) = talk_from {
                    body["timeLenStart"] = json!(t);
                }
                if let Some(t) = talk_to {
                    body["timeLenEnd"] = json!(t);
                }
                assert_records_page(&s, &body, &expected, page, size).await;
            }
        }
    }
}

/// A createTime window's deep pages skip its whole days and hours by their counts
/// (`task_days`, `task_hours`) and read the hour they start in from its nearer end: every
/// page, with a status or a campaign or neither, windows of whole days, inside hours, open
/// at an end or not at all, equals the plain `SELECT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_windows_deep_pages_are_its_tasks_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::new(dir.path()).await;
    let mut settings = test_settings(&db, dir.path());
    settings.dialer.enabled = false;
    let store =
        callcenter::store::connect(&db.url, StoreOptions::in_zone(settings.timezone.0)).await.expect("store");
    // 200,000 tasks over 90 days, about 90 an hour.
    store.seed(0, 200_000, Utc::now().timestamp_millis(), 8 * 3600).await.expect("seed");
    drop(store);
    let s = TestServer::start_on(settings, db, dir).await;
    let plain = Plain::connect(&s.db.url).await;
    let tz = s.settings.timezone.0;
    let day = |d: i64| (Utc::now().with_timezone(&tz).date_naive() - chrono::Duration::days(d)).to_string();
    // Windows of whole days, and inside hours: edges shorter and longer than half their
    // hour (counted from either side).
    let (days, inside, edges) = (
        (day(12) + " 00:00:00", day(9) + " 23:59:59"),
        (day(30) + " 10:30:00", day(27) + " 15:45:10"),
        (day(24) + " 08:10:00", day(19) + " 08:09:59"),
    );
    let (completed, stopped) = (Some(("已完成", "completed")), Some(("已停止", "stopped")));
    let windows = [
        (Some(&days.0), Some(&days.1), None, None),
        (Some(&inside.0), Some(&inside.1), None, None),
        (Some(&inside.0), Some(&inside.1), completed, None),
        (Some(&days.0), Some(&days.1), None, Some("default")),
        (Some(&inside.0), None, None, None),
        (Some(&edges.0), Some(&edges.1), None, None),
        (Some(&edges.0), Some(&edges.1), completed, Some("default")),
        (None, None, stopped, Some("default")),
    ];
    let mut pages = 0;
    for (from, until, status, campaign) in windows {
        let mut wheres = vec!["1 = 1".to_string()];
        let mut body = json!({});
        if let Some(from) = from {
            wheres.push(format!("created_ms >= {}", local_ms(from, tz)));
            body["createTimeStart"] = json!(from);
        }
        if let Some(until) = until {
            wheres.push(format!("created_ms < {}", local_ms(until, tz) + 1000));
            body["createTimeEnd"] = json!(until);
        }
        if let Some((label, name)) = status {
            body["status"] = json!(label);
            wheres.push(format!("status = '{name}'"));
        }
        if let Some(name) = campaign {
            body["batchName"] = json!(name);
            wheres.push(format!("batch_name = '{name}'"));
        }
        let wheres = wheres.join(" AND ");
        let total = plain.count(&format!("SELECT COUNT(*) FROM tasks WHERE {wheres}")).await;
        assert!(total > 5_000, "{body}: {total}");
        // Pages from the thousandth task to past the end, at offsets all over their hours.
        for size in [10, 37] {
            for offset in (1_000..total + size).step_by(331) {
                let num = offset / size + 1;
                body["pageNum"] = json!(num);
                body["pageSize"] = json!(size);
                let v = s.tasks(body.clone()).await;
                assert_eq!(v["total"], total, "{body}");
                let got: Vec<i64> =
                    v["rows"].as_array().unwrap().iter().map(|t| t["batchId"].as_i64().unwrap()).collect();
                let want = plain
                    .ints(&format!(
                        "SELECT batch_id FROM tasks WHERE {wheres} ORDER BY batch_id DESC LIMIT {size} OFFSET {}",
                        (num - 1) * size
                    ))
                    .await;
                assert_eq!(got, want, "{body}");
                pages += 1;
            }
        }
    }
    assert!(pages > 100, "{pages} pages");
}

/// Epoch ms of a local time of the API (`YYYY-MM-DD HH:MM:SS`): of a time that occurs
/// twice (summer time ending), the first.
fn local_ms(time: &str, tz: Tz) -> i64 {
    let local = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").unwrap();
    local.and_local_timezone(tz).earliest().unwrap().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_combination_and_page_equals_a_plain_select() {
    let records = env_or("CALLCENTER_FILTERS_RECORDS", 300_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::new(dir.path()).await;
    let now_ms = Utc::now().timestamp_millis();
    let mut settings = test_settings(&db, dir.path());
    // The counters' days: the configured zone's (Asia/Shanghai), chosen by the seed's store.
    let options = StoreOptions::in_zone(settings.timezone.0);
    let store = callcenter::store::connect(&db.url, options).await.expect("store");
    store.seed(records, records / 10, now_ms, 8 * 3600).await.expect("seed");
    drop(store);
    settings.dialer.enabled = true;
    settings.sim.answer_rate = 0.6;
    settings.dialer.retry_delay_secs = 0;
    let s = TestServer::start_on(settings, db, dir).await;
    let plain = Plain::connect(&s.db.url).await;
    check_round(&s, &plain, "seeded").await;

    let tz = s.settings.timezone.0;
    let samples = Samples::take(&plain).await;
    for batch in 0..3 {
        let v = s.post("/api/aicall/records/import", &json!(imports(batch, &samples, tz))).await;
        assert_eq!(v["code"], 0, "{v}");
    }
    check_round(&s, &plain, "after imports").await;

    for i in 0..120 {
        let v = s.post("/api/cdr/freeswitch", &cdr(i, &samples)).await;
        assert_eq!(v["code"], 0, "{v}");
    }
    check_round(&s, &plain, "after CDRs").await;

    // Two campaigns of their own, besides the default one, and tasks in each.
    for name in ["春季回访", "F-2"] {
        let v = s.post("/api/aicall/campaign/save", &json!({"batchName": name})).await;
        assert_eq!(v["code"], 0, "{v}");
    }
    let tickets: Vec<Value> = (0..80)
        .map(|i| {
            let mut t = ticket(&format!("F{i}"), &format!("1390001{i:04}"));
            if let Some(name) = ["春季回访", "F-2"].get(i % 3) {
                t["batchName"] = json!(name);
            }
            t
        })
        .collect();
    let ids = s.create(&tickets).await;
    s.post("/api/aicall/stopTasks", &json!({"batchIds": ids[..8]})).await;
    s.wait_all_ended(Duration::from_secs(60)).await;
    check_round(&s, &plain, "after calls").await;

    // A node configured for another zone (of summer time) keeps the database's days: its
    // local days are not the counters', and every total stays exact.
    let (mut settings, db, dir) = s.stop().await;
    settings.timezone = Timezone(chrono_tz::America::New_York);
    let s = TestServer::start_on(settings, db, dir).await;
    check_round(&s, &plain, "in another zone").await;
}

/// A list that takes several statements (a task total from its counters and its page; a
/// records page past the end and its total) reads them from one snapshot: polled while
/// tasks are created and calls imported, every page shows exactly the rows its total
/// counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_and_its_total_agree_while_rows_are_written() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = TestServer::start().await;
    let tz = s.settings.timezone.0;
    let now = Utc::now().timestamp_millis();
    let (streams, per_stream) = (4, 60);
    let window = json!({
        "createTimeStart": api_time(now - 3_600_000, tz),
        "createTimeEnd": api_time(now + 3_600_000, tz),
        "pageNum": 1,
        "pageSize": streams * per_stream,
    });
    let every_task = json!({"pageNum": 1, "pageSize": streams * per_stream});
    // The second page of 60: empty until the 61st call, then the calls past the 60th.
    let past_the_first = json!({"callType": "03", "pageNum": 2, "pageSize": 60});
    let writing = AtomicUsize::new(streams + 1);
    let create = |stream: usize| {
        let writing = &writing;
        let s = &s;
        async move {
            for i in 0..per_stream {
                s.create(&[ticket(&format!("S{stream}-{i}"), &format!("139{stream}002{i:04}"))]).await;
            }
            writing.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let import = async {
        for i in 0..120 {
            let start = now - 600_000 + i * 1000;
            let call = json!([{
                "uuid": format!("SNAP-{i}"),
                "telephone": "13912340000",
                "callType": "03",
                "calloutTime": api_time(start, tz),
                "answeredTime": api_time(start, tz),
                "callEndTime": api_time(start + 30_000, tz),
                "hangupCause": "NORMAL_CLEARING:sip:200",
                "extnum": "8001",
            }]);
            assert_eq!(s.post("/api/aicall/records/import", &call).await["code"], 0);
        }
        writing.fetch_sub(1, Ordering::SeqCst);
    };
    let poll = || async {
        let mut polls = 0;
        while writing.load(Ordering::SeqCst) > 0 {
            for filter in [&window, &every_task] {
                let v = s.post("/api/aicall/calltask/list", filter).await;
                let (total, rows) = (v["total"].as_u64().unwrap(), v["rows"].as_array().unwrap().len());
                assert_eq!(
                    rows as u64, total,
                    "calltask/list {filter}: a page of {rows} tasks with total {total}"
                );
            }
            let v = s.post("/api/aicall/records/list", &past_the_first).await;
            let (total, rows) = (v["total"].as_u64().unwrap(), v["rows"].as_array().unwrap().len());
            assert_eq!(
                rows as u64,
                total.saturating_sub(60),
                "records/list page 2: {rows} rows with total {total}"
            );
            polls += 1;
        }
        polls
    };
    let writers = futures::future::join_all((0..streams).map(create));
    let readers = futures::future::join_all((0..4).map(|_| poll()));
    let (_, _, polls) = tokio::join!(writers, import, readers);
    let polls: usize = polls.iter().sum();
    assert!(polls > 20, "the lists were read only {polls} times while rows were written");
    let v = s.post("/api/aicall/calltask/list", &window).await;
    assert_eq!(v["total"], streams * per_stream, "{v}");
    let v = s.post("/api/aicall/records/list", &past_the_first).await;
    assert_eq!((v["total"].as_u64(), v["rows"].as_array().unwrap().len()), (Some(120), 60), "{v}");
}

/// 90 calls over two and a half days from 2026-10-01 09:00 UTC, one every 40 minutes,
/// inbound of 0, 4, … 176 s of talk and manual of 2, 6, … 178 s, imported; and the totals
/// of each call type under `talk_totals`' filters.
async fn import_spread_calls(s: &TestServer) {
    let tz = s.settings.timezone.0;
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap().timestamp_millis();
    let calls: Vec<Value> = (0..90i64)
        .map(|i| {
            let callout = start + i * 2_400_000;
            let talk = i * 2 * 1000;
            let call_type = ["01", "03"][i as usize % 2];
            json!({
                "uuid": format!("ALL-{i}"),
                "telephone": "13912340000",
                "callType": call_type,
                "calloutTime": api_time(callout, tz),
                "answeredTime": if talk > 0 { api_time(callout, tz) } else { String::new() },
                "callEndTime": api_time(callout + talk, tz),
                "hangupCause": if talk > 0 { "NORMAL_CLEARING:sip:200" } else { "NO_ANSWER:sip:480" },
            })
        })
        .collect();
    assert_eq!(s.post("/api/aicall/records/import", &json!(calls)).await["code"], 0);
}

/// records/list's totals of each call type of `import_spread_calls` under talk-time
/// filters, with no time range and with one of whole days, hours and minutes.
async fn talk_totals(s: &TestServer) -> Vec<i64> {
    let talk = [
        json!({}),
        json!({"timeLenStart": 5}),
        json!({"timeLenEnd": 0}),
        json!({"timeLenStart": 60, "timeLenEnd": 120}),
        json!({"timeLenStart": 17, "timeLenEnd": 151}),
    ];
    let windows = [
        json!({}),
        json!({"calloutTimeStart": "2026-10-01 17:10:00", "calloutTimeEnd": "2026-10-03 20:49:59"}),
    ];
    let mut totals = Vec::new();
    for call_type in ["01", "03"] {
        for window in &windows {
            for filter in &talk {
                let mut body = filter.clone();
                body["callType"] = json!(call_type);
                for (key, value) in window.as_object().unwrap() {
                    body[key] = value.clone();
                }
                totals.push(s.records(body).await["total"].as_i64().unwrap());
            }
        }
    }
    totals
}

/// A database of the schema before the counters of all time (its days settled) gets them
/// from its days when the server migrates it: totals with no time range, which read only
/// those rows, stay exact.
#[tokio::test]
async fn the_counters_of_all_time_are_summed_from_the_days_of_an_older_schema() {
    let s = TestServer::start().await;
    import_spread_calls(&s).await;
    let before = talk_totals(&s).await;
    // 45 calls of each type, with no time range: inbound of 0, 4, … 176 s, manual of 2, 6,
    // … 178 s.
    assert_eq!([&before[0..5], &before[10..15]].concat(), [45, 43, 1, 16, 33, 45, 44, 0, 15, 34]);
    // Back to the schema before: no rows of all time, their migration not run.
    let (settings, db, dir) = s.stop().await;
    let plain = Plain::connect(&db.url).await;
    plain.execute("DELETE FROM record_talk WHERE span_ms = 0").await;
    plain.execute("DELETE FROM _sqlx_migrations WHERE version = 16").await;
    drop(plain);
    let s = TestServer::start_on(settings, db, dir).await;
    assert_eq!(talk_totals(&s).await, before);
}

/// A database whose talk-time buckets are those of the schema before (widths in powers of
/// 4) has them summed again at the new widths when the server migrates it: every total
/// under a talk-time range, which reads them, stays exact.
#[tokio::test]
async fn the_talk_buckets_of_an_older_schema_are_summed_again_at_the_new_widths() {
    let s = TestServer::start().await;
    import_spread_calls(&s).await;
    let before = talk_totals(&s).await;
    let (settings, db, dir) = s.stop().await;
    let plain = Plain::connect(&db.url).await;
    plain.execute("DELETE FROM record_talk WHERE level BETWEEN 1 AND 6").await;
    for level in 1..=6 {
        let width = 4i64.pow(level);
        plain
            .execute(&format!(
                "INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
                 SELECT call_type, batch_name, span_ms, {level}, bucket / {width}, start_ms, SUM(calls)
                 FROM record_talk WHERE level = 0 GROUP BY call_type, batch_name, span_ms, bucket / {width}, start_ms"
            ))
            .await;
    }
    plain.execute("DELETE FROM _sqlx_migrations WHERE version = 17").await;
    drop(plain);
    let s = TestServer::start_on(settings, db, dir).await;
    assert_eq!(talk_totals(&s).await, before);
}
