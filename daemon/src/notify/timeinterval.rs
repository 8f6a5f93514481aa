//! Alertmanager's `time_intervals` (and the older `mute_time_intervals`):
//! named sets of times, weekdays, days of month, months and years, in a
//! time zone, that routes mute or activate on.
//!
//! Owns parsing and the "is this instant inside" question; the dispatcher
//! decides what muting means. The zone database is the system's
//! (`/usr/share/zoneinfo`), read through jiff.

use jiff::tz::TimeZone;
use serde::Deserialize;

/// One named entry of `time_intervals:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    pub name: String,
    #[serde(default)]
    pub time_intervals: Vec<IntervalConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntervalConfig {
    pub times: Vec<TimeRangeConfig>,
    pub weekdays: Vec<String>,
    pub days_of_month: Vec<String>,
    pub months: Vec<String>,
    pub years: Vec<String>,
    /// IANA zone name, `Local` or `UTC` (default).
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeConfig {
    pub start_time: String,
    pub end_time: String,
}

/// A parsed interval: every field that is set must hold.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Minutes since midnight, [start, end).
    times: Vec<(u32, u32)>,
    /// 0 = Sunday, as Go.
    weekdays: Vec<(i32, i32)>,
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(i32, i32)>,
    years: Vec<(i32, i32)>,
    tz: TimeZone,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn minutes(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
    let h: u32 = h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?;
    let m: u32 = m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("{s:?} is not a time between 00:00 and 24:00"));
    }
    Ok(h * 60 + m)
}

/// `a` or `a:b`, each side through `one`.
fn range(s: &str, one: &dyn Fn(&str) -> Result<i32, String>) -> Result<(i32, i32), String> {
    match s.split_once(':') {
        Some((a, b)) => {
            let (a, b) = (one(a.trim())?, one(b.trim())?);
            Ok((a, b))
        }
        None => {
            let a = one(s.trim())?;
            Ok((a, a))
        }
    }
}

fn named(names: &'static [&'static str], base: i32) -> impl Fn(&str) -> Result<i32, String> {
    move |s: &str| {
        let l = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == l) {
            return Ok(i as i32 + base);
        }
        match s.parse::<i32>() {
            Ok(n) if base == 1 && (1..=12).contains(&n) => Ok(n),
            _ => Err(format!("{s:?} is not one of {}", names.join(", "))),
        }
    }
}

impl Interval {
    pub fn parse(c: &IntervalConfig) -> Result<Interval, String> {
        let mut times = Vec::new();
        for t in &c.times {
            let (a, b) = (minutes(&t.start_time)?, minutes(&t.end_time)?);
            if a >= b {
                return Err(format!(
                    "start_time {:?} must be before end_time {:?}",
                    t.start_time, t.end_time
                ));
            }
            times.push((a, b));
        }
        let weekdays = c
            .weekdays
            .iter()
            .map(|w| range(w, &named(&WEEKDAYS, 0)))
            .collect::<Result<_, _>>()?;
        let day = |s: &str| -> Result<i32, String> {
            match s.parse::<i32>() {
                Ok(d) if d != 0 && (-31..=31).contains(&d) => Ok(d),
                _ => Err(format!("{s:?} is not a day of month (1..31 or -31..-1)")),
            }
        };
        let days_of_month = c
            .days_of_month
            .iter()
            .map(|d| range(d, &day))
            .collect::<Result<_, _>>()?;
        let months = c
            .months
            .iter()
            .map(|m| range(m, &named(&MONTHS, 1)))
            .collect::<Result<_, _>>()?;
        let year = |s: &str| s.parse::<i32>().map_err(|_| format!("{s:?} is not a year"));
        let years = c
            .years
            .iter()
            .map(|y| range(y, &year))
            .collect::<Result<_, _>>()?;
        let tz = match c.location.as_deref() {
            None | Some("UTC") | Some("") => TimeZone::UTC,
            Some("Local") => TimeZone::system(),
            Some(name) => {
                TimeZone::get(name).map_err(|e| format!("unknown location {name:?}: {e}"))?
            }
        };
        Ok(Interval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            tz,
        })
    }

    /// Whether the instant (ms since the epoch) falls inside.
    pub fn contains(&self, at_ms: i64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(at_ms) else {
            return false;
        };
        let z = ts.to_zoned(self.tz.clone());
        let mins = z.hour() as u32 * 60 + z.minute() as u32;
        if !self.times.is_empty() && !self.times.iter().any(|&(a, b)| mins >= a && mins < b) {
            return false;
        }
        let wd = i32::from(z.weekday().to_sunday_zero_offset());
        if !self.weekdays.is_empty() && !self.weekdays.iter().any(|&(a, b)| wd >= a && wd <= b) {
            return false;
        }
        if !self.days_of_month.is_empty() {
            let dim = i32::from(z.days_in_month());
            let d = i32::from(z.day());
            let abs = |x: i32| if x < 0 { dim + 1 + x } else { x };
            if !self
                .days_of_month
                .iter()
                .any(|&(a, b)| d >= abs(a) && d <= abs(b))
            {
                return false;
            }
        }
        let m = i32::from(z.month());
        if !self.months.is_empty() && !self.months.iter().any(|&(a, b)| m >= a && m <= b) {
            return false;
        }
        let y = i32::from(z.year());
        if !self.years.is_empty() && !self.years.iter().any(|&(a, b)| y >= a && y <= b) {
            return false;
        }
        true
    }
}

/// A named set: inside when any of its intervals contains the instant.
pub fn any_contains(set: &[Interval], at_ms: i64) -> bool {
    set.iter().any(|i| i.contains(at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn business_hours_in_utc() {
        let i = Interval::parse(&IntervalConfig {
            times: vec![TimeRangeConfig {
                start_time: "09:00".into(),
                end_time: "17:00".into(),
            }],
            weekdays: vec!["monday:friday".into()],
            ..Default::default()
        })
        .unwrap();
        // 2026-11-23 is a Monday.
        assert!(i.contains(ms("2026-11-23T09:00:00Z")));
        assert!(!i.contains(ms("2026-11-23T17:00:00Z")));
        assert!(!i.contains(ms("2026-11-22T12:00:00Z")));
    }

    #[test]
    fn negative_days_months_years_and_zones() {
        let i = Interval::parse(&IntervalConfig {
            days_of_month: vec!["-1".into()],
            months: vec!["november:december".into()],
            years: vec!["2026".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(i.contains(ms("2026-11-30T12:00:00Z")));
        assert!(!i.contains(ms("2026-11-29T12:00:00Z")));
        assert!(!i.contains(ms("2025-11-30T12:00:00Z")));
        assert!(Interval::parse(&IntervalConfig {
            weekdays: vec!["funday".into()],
            ..Default::default()
        })
        .is_err());
        assert!(Interval::parse(&IntervalConfig {
            location: Some("Mars/Olympus".into()),
            ..Default::default()
        })
        .is_err());
    }
}
