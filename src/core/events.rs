//! AWS's own warnings before it takes an instance away, and when to drain because of them.
//!
//! EC2 announces many outages in advance through the instance metadata service: scheduled
//! events (reboots, stops, retirement, maintenance), Spot interruption notices (two minutes
//! ahead) and rebalance recommendations. A node that drains before such an event hands its
//! addresses over by planned moves (milliseconds) instead of by a failover after the totem
//! token expires (tens of seconds with AWS's recommended timeouts).
//!
//! This module only parses the metadata documents and decides; the adapter polls IMDS and
//! puts the node in a timed standby over CPG.

use std::collections::BTreeSet;

use serde::Deserialize;

/// The kinds of warning EC2 gives, as the configuration names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// `system-reboot`: the host is rebooted.
    SystemReboot,
    /// `instance-reboot`: the instance is rebooted.
    InstanceReboot,
    /// `system-maintenance`: power or network maintenance on the host.
    SystemMaintenance,
    /// `instance-retirement`: the instance is stopped or terminated for good.
    InstanceRetirement,
    /// `instance-stop`: the instance is stopped.
    InstanceStop,
    /// A Spot interruption notice (`spot/instance-action`).
    SpotInterruption,
    /// A rebalance recommendation (`events/recommendations/rebalance`).
    Rebalance,
}

impl EventKind {
    /// Every kind, as the configuration may list them.
    pub const ALL: [EventKind; 7] = [
        EventKind::SystemReboot,
        EventKind::InstanceReboot,
        EventKind::SystemMaintenance,
        EventKind::InstanceRetirement,
        EventKind::InstanceStop,
        EventKind::SpotInterruption,
        EventKind::Rebalance,
    ];

    /// The name EC2 (or, for the last two, this program's configuration) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SystemReboot => "system-reboot",
            EventKind::InstanceReboot => "instance-reboot",
            EventKind::SystemMaintenance => "system-maintenance",
            EventKind::InstanceRetirement => "instance-retirement",
            EventKind::InstanceStop => "instance-stop",
            EventKind::SpotInterruption => "spot-interruption",
            EventKind::Rebalance => "rebalance-recommendation",
        }
    }

    /// The kind a name stands for.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One announced event, times in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEvent {
    /// What is going to happen.
    pub kind: EventKind,
    /// EC2's event id (scheduled events), or the document it came from.
    pub id: String,
    /// The earliest time it may start.
    pub not_before: u64,
    /// The latest time it ends, when EC2 says.
    pub not_after: Option<u64>,
}

/// A metadata document that does not say what this module expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    /// Not the JSON shape EC2 documents.
    #[error("{document}: not the documented JSON: {reason}")]
    Shape {
        /// Which metadata document.
        document: &'static str,
        /// What the JSON parser said.
        reason: String,
    },
    /// A time in a form EC2 does not use, or out of range.
    #[error("{document}: unreadable time `{text}`")]
    Time {
        /// Which metadata document.
        document: &'static str,
        /// The text that is not a time.
        text: String,
    },
}

/// The longest document accepted: a handful of events is a few hundred bytes.
const MAX_DOCUMENT: usize = 64 * 1024;

const SCHEDULED: &str = "events/maintenance/scheduled";
const SPOT: &str = "spot/instance-action";
const REBALANCE: &str = "events/recommendations/rebalance";

/// Scheduled events (`meta-data/events/maintenance/scheduled`): the active ones of a kind this
/// program knows. Completed and canceled events are dropped; an unknown code is reported in
/// `unknown` and otherwise ignored.
pub fn parse_scheduled(text: &str) -> Result<(Vec<AwsEvent>, Vec<String>), EventParseError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Scheduled {
        code: String,
        #[serde(default)]
        event_id: String,
        not_before: String,
        #[serde(default)]
        not_after: Option<String>,
        #[serde(default)]
        state: Option<String>,
    }
    let items: Vec<Scheduled> = from_json(SCHEDULED, text)?;
    let mut events = Vec::new();
    let mut unknown = Vec::new();
    for item in items {
        if item.state.as_deref().is_some_and(|s| s != "active") {
            continue;
        }
        let Some(kind) = EventKind::parse(&item.code).filter(|k| !matches!(k, EventKind::SpotInterruption | EventKind::Rebalance)) else {
            unknown.push(item.code);
            continue;
        };
        let not_before = scheduled_time(&item.not_before)?;
        let not_after = item.not_after.as_deref().map(scheduled_time).transpose()?;
        events.push(AwsEvent {
            kind,
            id: item.event_id,
            not_before,
            not_after,
        });
    }
    Ok((events, unknown))
}

/// A Spot interruption notice (`meta-data/spot/instance-action`): the instance is stopped,
/// hibernated or terminated at `time`.
pub fn parse_spot(text: &str) -> Result<AwsEvent, EventParseError> {
    #[derive(Deserialize)]
    struct Action {
        action: String,
        time: String,
    }
    let a: Action = from_json(SPOT, text)?;
    let at = rfc3339_time(&a.time).ok_or_else(|| EventParseError::Time { document: SPOT, text: a.time.clone() })?;
    Ok(AwsEvent {
        kind: EventKind::SpotInterruption,
        id: format!("spot-{}", a.action),
        not_before: at,
        not_after: None,
    })
}

/// A rebalance recommendation (`meta-data/events/recommendations/rebalance`): no event time;
/// the instance is at elevated risk of interruption from `noticeTime` on.
pub fn parse_rebalance(text: &str) -> Result<AwsEvent, EventParseError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Notice {
        notice_time: String,
    }
    let n: Notice = from_json(REBALANCE, text)?;
    let at = rfc3339_time(&n.notice_time)
        .ok_or_else(|| EventParseError::Time { document: REBALANCE, text: n.notice_time.clone() })?;
    Ok(AwsEvent {
        kind: EventKind::Rebalance,
        id: "rebalance".into(),
        not_before: at,
        not_after: None,
    })
}

fn from_json<T: serde::de::DeserializeOwned>(document: &'static str, text: &str) -> Result<T, EventParseError> {
    if text.len() > MAX_DOCUMENT {
        return Err(EventParseError::Shape { document, reason: format!("{} bytes", text.len()) });
    }
    serde_json::from_str(text).map_err(|e| EventParseError::Shape { document, reason: e.to_string() })
}

/// What the node does about the events in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainPolicy {
    /// Drain this long before an event may start.
    pub drain_before: u64,
    /// Events without an end stay drained this long after they may start.
    pub window: u64,
    /// The kinds acted on.
    pub kinds: BTreeSet<EventKind>,
}

/// The decision: drain until `until` because of `event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// The event that causes it (the earliest, if several do).
    pub event: AwsEvent,
    /// When the drain ends by itself (seconds since the epoch).
    pub until: u64,
}

/// Whether the node must be drained at `now`: some event of an enabled kind starts within
/// `drain_before`, or started and its window has not ended.
pub fn decide(events: &[AwsEvent], now: u64, policy: &DrainPolicy) -> Option<Drain> {
    events
        .iter()
        .filter(|e| policy.kinds.contains(&e.kind))
        .filter_map(|e| {
            let from = e.not_before.saturating_sub(policy.drain_before);
            let until = e.not_after.unwrap_or_else(|| e.not_before.saturating_add(policy.window));
            (from <= now && now < until).then(|| Drain { event: e.clone(), until })
        })
        .min_by_key(|d| (d.event.not_before, d.until))
}

/// `21 Jan 2019 09:00:43 GMT`, as IMDS writes scheduled events' times.
fn scheduled_time(text: &str) -> Result<u64, EventParseError> {
    let bad = || EventParseError::Time { document: SCHEDULED, text: text.to_owned() };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, clock, zone] = parts.as_slice() else { return Err(bad()) };
    if !matches!(*zone, "GMT" | "UTC") {
        return Err(bad());
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month)).ok_or_else(bad)?;
    let (h, m, s) = hms(clock).ok_or_else(bad)?;
    let day: u32 = day.parse().map_err(|_| bad())?;
    let year: i64 = year.parse().map_err(|_| bad())?;
    unix_seconds(year, u32::try_from(month).map_err(|_| bad())? + 1, day, h, m, s).ok_or_else(bad)
}

/// `2017-09-18T08:22:00Z` (UTC only, fractions ignored), as IMDS writes Spot and rebalance times.
fn rfc3339_time(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, clock) = text.split_once('T')?;
    let clock = clock.strip_suffix('Z').or_else(|| clock.strip_suffix("+00:00"))?;
    let clock = clock.split('.').next()?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (h, m, s) = hms(clock)?;
    unix_seconds(year, month, day, h, m, s)
}

fn hms(clock: &str) -> Option<(u32, u32, u32)> {
    let mut c = clock.splitn(3, ':');
    let h: u32 = c.next()?.parse().ok()?;
    let m: u32 = c.next()?.parse().ok()?;
    let s: u32 = c.next()?.parse().ok()?;
    (h < 24 && m < 60 && s < 61).then_some((h, m, s))
}

/// Seconds since the epoch of a UTC civil time (days from civil, proleptic Gregorian); None
/// for dates before 1970 or after 9999, or a day the month does not have.
fn unix_seconds(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<u64> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day == 0 || day > days_in_month[usize::try_from(month - 1).ok()?] {
        return None;
    }
    // Shift the year to start in March so the leap day is the year's last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kinds: &[EventKind]) -> DrainPolicy {
        DrainPolicy {
            drain_before: 600,
            window: 3600,
            kinds: kinds.iter().copied().collect(),
        }
    }

    #[test]
    fn times_as_imds_writes_them() {
        assert_eq!(scheduled_time("21 Jan 2019 09:00:43 GMT"), Ok(1_548_061_243));
        assert_eq!(rfc3339_time("2017-09-18T08:22:00Z"), Some(1_505_722_920));
        assert_eq!(rfc3339_time("2020-11-05T08:22:00.123Z"), Some(1_604_564_520));
        assert_eq!(rfc3339_time("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(rfc3339_time("2023-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_time("2017-09-18T08:22:00+02:00"), None, "only UTC is documented");
        assert!(scheduled_time("21 Foo 2019 09:00:43 GMT").is_err());
        assert!(scheduled_time("21 Jan 2019 25:00:43 GMT").is_err());
        assert!(scheduled_time("").is_err());
    }

    #[test]
    fn scheduled_events_keep_the_active_known_ones() {
        let doc = r#"[
          {"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","Description":"scheduled reboot",
           "EventId":"instance-event-0d59937288b749b32","NotAfter":"21 Jan 2019 09:17:23 GMT","State":"active"},
          {"NotBefore":"22 Jan 2019 09:00:00 GMT","Code":"instance-stop","Description":"[Completed] stop",
           "EventId":"instance-event-1","NotAfter":"22 Jan 2019 10:00:00 GMT","State":"completed"},
          {"NotBefore":"23 Jan 2019 09:00:00 GMT","Code":"instance-teleport","EventId":"instance-event-2","State":"active"}
        ]"#;
        let (events, unknown) = parse_scheduled(doc).unwrap();
        assert_eq!(
            events,
            vec![AwsEvent {
                kind: EventKind::SystemReboot,
                id: "instance-event-0d59937288b749b32".into(),
                not_before: 1_548_061_243,
                not_after: Some(1_548_062_243),
            }]
        );
        assert_eq!(unknown, vec!["instance-teleport".to_string()]);
        assert_eq!(parse_scheduled("[]").unwrap(), (vec![], vec![]));
    }

    #[test]
    fn malformed_documents_are_errors_naming_the_document() {
        let e = parse_scheduled("{\"Code\":1}").unwrap_err().to_string();
        assert!(e.starts_with("events/maintenance/scheduled"), "{e}");
        let e = parse_scheduled(r#"[{"Code":"system-reboot","NotBefore":"tomorrow"}]"#).unwrap_err();
        assert_eq!(e, EventParseError::Time { document: SCHEDULED, text: "tomorrow".into() });
        assert!(parse_spot("<html>").is_err());
        assert!(parse_spot(r#"{"action":"terminate","time":"soon"}"#).is_err());
        assert!(parse_rebalance(r#"{"noticeTime":5}"#).is_err());
        assert!(parse_scheduled(&"[".repeat(MAX_DOCUMENT + 1)).is_err());
    }

    #[test]
    fn spot_and_rebalance_notices() {
        let spot = parse_spot(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#).unwrap();
        assert_eq!((spot.kind, spot.not_before, spot.id.as_str()), (EventKind::SpotInterruption, 1_505_722_920, "spot-terminate"));
        let r = parse_rebalance(r#"{"noticeTime": "2020-11-05T08:22:00Z"}"#).unwrap();
        assert_eq!((r.kind, r.not_before), (EventKind::Rebalance, 1_604_564_520));
    }

    #[test]
    fn drains_within_drain_before_and_until_the_window_ends() {
        let reboot = AwsEvent { kind: EventKind::SystemReboot, id: "e1".into(), not_before: 10_000, not_after: Some(11_000) };
        let p = policy(&[EventKind::SystemReboot]);
        assert_eq!(decide(&[reboot.clone()], 9_399, &p), None, "too early");
        assert_eq!(decide(&[reboot.clone()], 9_400, &p).map(|d| d.until), Some(11_000));
        assert_eq!(decide(&[reboot.clone()], 10_999, &p).map(|d| d.until), Some(11_000));
        assert_eq!(decide(&[reboot.clone()], 11_000, &p), None, "the window is over");
        // A kind not enabled is ignored.
        assert_eq!(decide(&[reboot], 9_500, &policy(&[EventKind::InstanceStop])), None);
        // Without an end, the configured window after its start.
        let spot = AwsEvent { kind: EventKind::SpotInterruption, id: "s".into(), not_before: 5_000, not_after: None };
        assert_eq!(decide(&[spot], 4_900, &policy(&[EventKind::SpotInterruption])).map(|d| d.until), Some(8_600));
    }

    #[test]
    fn the_earliest_event_is_the_cause() {
        let a = AwsEvent { kind: EventKind::InstanceStop, id: "late".into(), not_before: 2_000, not_after: Some(3_000) };
        let b = AwsEvent { kind: EventKind::SystemMaintenance, id: "early".into(), not_before: 1_500, not_after: Some(1_600) };
        let p = policy(&[EventKind::InstanceStop, EventKind::SystemMaintenance]);
        assert_eq!(decide(&[a.clone(), b], 1_450, &p).map(|d| d.event.id), Some("early".into()));
        assert_eq!(decide(&[a], 1_450, &p).map(|d| d.event.id), Some("late".into()));
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("reboot"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const KINDS: [EventKind; 7] = EventKind::ALL;

        fn event() -> impl Strategy<Value = AwsEvent> {
            (0usize..KINDS.len(), any::<u64>(), proptest::option::of(any::<u64>())).prop_map(|(k, not_before, not_after)| AwsEvent {
                kind: KINDS[k],
                id: format!("e{k}"),
                not_before,
                not_after,
            })
        }

        proptest! {
            /// IMDS documents are input from the network: nothing in them panics the daemon.
            #[test]
            fn documents_never_panic(text in "\\PC{0,300}") {
                let _ = parse_scheduled(&text);
                let _ = parse_spot(&text);
                let _ = parse_rebalance(&text);
            }

            /// The same, for documents of the right shape with any values in them.
            #[test]
            fn any_values_in_the_right_shape_never_panic(code in "\\PC{0,20}", a in "\\PC{0,40}", b in "\\PC{0,40}", state in "\\PC{0,10}") {
                let doc = serde_json::json!([{"Code": code, "NotBefore": a, "NotAfter": b, "EventId": "x", "State": state, "Description": ""}]);
                let _ = parse_scheduled(&doc.to_string());
                let _ = parse_spot(&serde_json::json!({"action": code, "time": a}).to_string());
                let _ = parse_rebalance(&serde_json::json!({"noticeTime": b}).to_string());
            }

            /// Any times, up to u64::MAX: the decision never overflows, only drains inside an
            /// event's window, and picks the earliest event that applies.
            #[test]
            fn decide_is_total_and_stays_inside_the_window(
                events in proptest::collection::vec(event(), 0..6),
                now in any::<u64>(),
                drain_before in any::<u64>(),
                window in any::<u64>(),
            ) {
                let policy = DrainPolicy { drain_before, window, kinds: KINDS.iter().copied().collect() };
                match decide(&events, now, &policy) {
                    Some(d) => {
                        prop_assert!(d.event.not_before.saturating_sub(drain_before) <= now && now < d.until);
                        prop_assert!(events.contains(&d.event));
                        for e in &events {
                            let until = e.not_after.unwrap_or_else(|| e.not_before.saturating_add(window));
                            if e.not_before.saturating_sub(drain_before) <= now && now < until {
                                prop_assert!(d.event.not_before <= e.not_before);
                            }
                        }
                    }
                    None => {
                        for e in &events {
                            let until = e.not_after.unwrap_or_else(|| e.not_before.saturating_add(window));
                            prop_assert!(!(e.not_before.saturating_sub(drain_before) <= now && now < until), "{e:?} applies");
                        }
                    }
                }
            }
        }
    }
}
