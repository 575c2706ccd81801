//! Times as the benchmarks read them: unix seconds from the lab's own clocks and logs, turned
//! into milliseconds and summarised the same way in every table.

use std::time::SystemTime;

use crate::Lab;

/// Milliseconds from `a` to `b` (unix seconds), to a tenth of a millisecond.
pub fn ms(a: f64, b: f64) -> f64 {
    ((b - a) * 10_000.0).round() / 10.0
}

/// The median, NaN for no values (never panics on NaN: total order).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Milliseconds for a table: "–" for none, seconds from one second up.
pub fn fmt_ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else {
        format!("{x:.0} ms")
    }
}

/// An RFC 3339 time (as the daemon's status writes it) in unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// The time at the start of a corosync log line (`Dec 02 03:04:05.678 ...`, UTC, no year) in
/// unix seconds, taking the year from now.
pub fn corosync_log_time(line: &str) -> Option<f64> {
    let mut w = line.split_whitespace();
    let (mon, day, hms) = (w.next()?, w.next()?, w.next()?);
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|x| *x == mon)? + 1;
    let d: u32 = day.parse().ok()?;
    let now = humantime::format_rfc3339(SystemTime::now()).to_string();
    let year = now.get(..4)?;
    parse_rfc3339(&format!("{year}-{m:02}-{d:02}T{hms}"))
}

/// Seconds within `[lo, hi]` covered by at least one of `spans` (start, end), so calls in
/// flight at the same time count once.
pub fn covered(spans: &[(f64, f64)], lo: f64, hi: f64) -> f64 {
    let mut clipped: Vec<(f64, f64)> = spans
        .iter()
        .map(|&(a, b)| (a.max(lo), b.min(hi)))
        .filter(|(a, b)| a < b)
        .collect();
    clipped.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (a, b) in clipped {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((ca, cb)) = current {
        total += cb - ca;
    }
    total
}

/// When node `i`'s corosync first reported a membership with members gone, at or after `t0`.
pub fn corosync_membership_after(lab: &Lab, i: usize, t0: f64) -> Option<f64> {
    lab.corosync_log(i)
        .lines()
        .filter(|l| l.contains("A new membership") && l.contains("Members left"))
        .filter_map(corosync_log_time)
        .find(|&t| t >= t0 - 0.0005)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_milliseconds() {
        assert!(median(&mut []).is_nan());
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(ms(10.0, 10.0123), 12.3);
        assert_eq!(fmt_ms(f64::NAN), "–");
        assert_eq!(fmt_ms(2210.0), "2.21 s");
        assert_eq!(fmt_ms(30.4), "30 ms");
    }

    #[test]
    fn overlapping_spans_count_once_and_are_clipped() {
        assert_eq!(covered(&[], 0.0, 1.0), 0.0);
        assert!((covered(&[(0.1, 0.3), (0.2, 0.4), (0.6, 0.7)], 0.0, 1.0) - 0.4).abs() < 1e-9);
        assert!((covered(&[(-1.0, 0.5), (0.9, 2.0)], 0.0, 1.0) - 0.6).abs() < 1e-9);
        assert_eq!(covered(&[(2.0, 3.0)], 0.0, 1.0), 0.0);
    }

    #[test]
    fn corosync_log_times_are_utc_seconds() {
        let year = humantime::format_rfc3339(SystemTime::now()).to_string()[..4].to_string();
        let line = "Dec 02 03:04:05.250 [KNET  ] A new membership (1.2c) was formed. Members left: 1";
        let expected = parse_rfc3339(&format!("{year}-12-02T03:04:05.250Z"));
        assert_eq!(corosync_log_time(line), expected);
        assert_eq!(corosync_log_time("garbage"), None);
    }
}
