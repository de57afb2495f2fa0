//! Date functions. AQL has no date type: dates are numeric timestamps
//! (milliseconds since 1970-01-01T00:00:00Z) or ISO 8601 strings
//! (`2014-05-07T14:19:09.522Z`, `2014-05-07 14:19:09`, `2014-05-07`, partial
//! `2014-05`/`2014`, with an optional `Z` or `±HH:MM` offset). The valid range is
//! 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z; a date outside it, or a
//! value that is not a date, makes a function return `null`.
//!
//! ThemisDB computes in UTC. The optional timezone arguments accept only UTC
//! (`"UTC"`, `"Etc/UTC"`, `"GMT"`, `"Z"`); any other zone is an error rather
//! than a silently wrong answer. Units of time: a day is 24 hours, a week 7
//! days, a year 365.2425 days and a month 1/12 of a year (for `DATE_DIFF`);
//! `DATE_ADD` adds calendar months and years, a day that does not exist in the
//! target month overflowing into the next one (January 31 + 1 month = March 2
//! or 3), as in ArangoDB.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{arg, det, flag, int_arg, nondet, ok_bool, ok_null, Def};
use crate::error::QueryError;
use crate::value;

const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;
const SECOND_MS: i64 = 1000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// 365.2425 days.
const YEAR_MS: f64 = 365.2425 * DAY_MS as f64;

pub(super) const DEFS: &[Def] = &[
    nondet("DATE_NOW", 0, 0, date_now, "DATE_NOW() → number: the current time as a millisecond timestamp"),
    det("DATE_ISO8601", 1, 7, date_iso8601, "DATE_ISO8601(date) or DATE_ISO8601(year, month, day, hour?, minute?, second?, ms?) → string: \"YYYY-MM-DDTHH:MM:SS.mmmZ\""),
    det("DATE_TIMESTAMP", 1, 7, date_timestamp, "DATE_TIMESTAMP(date) or DATE_TIMESTAMP(year, month, day, hour?, minute?, second?, ms?) → number: milliseconds since the Unix epoch"),
    det("DATE_DAYOFWEEK", 1, 2, date_dayofweek, "DATE_DAYOFWEEK(date, timezone?) → number: 0 (Sunday) to 6 (Saturday)"),
    det("DATE_YEAR", 1, 2, date_year, "DATE_YEAR(date, timezone?) → number: the year"),
    det("DATE_MONTH", 1, 2, date_month, "DATE_MONTH(date, timezone?) → number: the month, 1 to 12"),
    det("DATE_DAY", 1, 2, date_day, "DATE_DAY(date, timezone?) → number: the day of the month, 1 to 31"),
    det("DATE_HOUR", 1, 2, date_hour, "DATE_HOUR(date, timezone?) → number: the hour, 0 to 23"),
    det("DATE_MINUTE", 1, 2, date_minute, "DATE_MINUTE(date, timezone?) → number: the minute, 0 to 59"),
    det("DATE_SECOND", 1, 1, date_second, "DATE_SECOND(date) → number: the second, 0 to 59"),
    det("DATE_MILLISECOND", 1, 1, date_millisecond, "DATE_MILLISECOND(date) → number: the millisecond, 0 to 999"),
    det("DATE_DAYOFYEAR", 1, 2, date_dayofyear, "DATE_DAYOFYEAR(date, timezone?) → number: the day of the year, 1 to 366"),
    det("DATE_ISOWEEK", 1, 2, date_isoweek, "DATE_ISOWEEK(date, timezone?) → number: the ISO 8601 week number, 1 to 53"),
    det("DATE_ISOWEEKYEAR", 1, 2, date_isoweekyear, "DATE_ISOWEEKYEAR(date, timezone?) → object: {week, year} of the ISO 8601 week"),
    det("DATE_LEAPYEAR", 1, 2, date_leapyear, "DATE_LEAPYEAR(date, timezone?) → bool: whether the date is in a leap year"),
    det("DATE_QUARTER", 1, 2, date_quarter, "DATE_QUARTER(date, timezone?) → number: the quarter, 1 to 4"),
    det("DATE_DAYS_IN_MONTH", 1, 2, date_days_in_month, "DATE_DAYS_IN_MONTH(date, timezone?) → number: days in the date's month, 28 to 31"),
    det("DATE_TRUNC", 2, 3, date_trunc, "DATE_TRUNC(date, unit, timezone?) → string: the date with everything below unit (y, m, d, h, i, s, f) reset"),
    det("DATE_ROUND", 3, 4, date_round, "DATE_ROUND(date, amount, unit, timezone?) → string: the date rounded down to a multiple of amount units (d, h, i, s, f)"),
    det("DATE_FORMAT", 2, 3, date_format, "DATE_FORMAT(date, format, timezone?) → string: formatted with placeholders %yyyy %mm %dd %hh %ii %ss %fff %z %t %w %www %mmm %x %k %q %l %a %% ..."),
    det("DATE_ADD", 2, 4, date_add, "DATE_ADD(date, amount, unit, timezone?) or DATE_ADD(date, isoDuration, timezone?) → string: the date plus amount units (y, m, w, d, h, i, s, f) or an ISO duration like \"P1Y2M3DT4H\""),
    det("DATE_SUBTRACT", 2, 4, date_subtract, "DATE_SUBTRACT(date, amount, unit, timezone?) or DATE_SUBTRACT(date, isoDuration, timezone?) → string: the date minus amount units or an ISO duration"),
    det("DATE_DIFF", 3, 6, date_diff, "DATE_DIFF(date1, date2, unit, asFloat?, timezone1?, timezone2?) → number: date2 - date1 in unit (rounded unless asFloat)"),
    det("DATE_COMPARE", 3, 6, date_compare, "DATE_COMPARE(date1, date2, unitRangeStart, unitRangeEnd?, timezone1?, timezone2?) → bool: whether the dates agree on the units from start to end (years ... milliseconds)"),
    det("DATE_TIMEZONE", 0, 0, date_timezone, "DATE_TIMEZONE() → string: the server's timezone, always \"UTC\""),
];

// ---------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian), after Howard Hinnant's algorithms.

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch of year/month/day, where month may exceed 12 and day
/// may exceed the month's length (both overflow forward). `None` for values so
/// far out that the arithmetic could overflow (they are out of range anyway).
fn days_overflowing(y: i64, m: i64, d: i64) -> Option<i64> {
    const FAR: i64 = 100_000_000;
    let months = y.checked_mul(12)?.checked_add(m.checked_sub(1)?)?;
    if months.abs() > FAR * 12 || d.abs() > FAR * 400 {
        return None;
    }
    Some(days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1) + d - 1)
}

/// The calendar fields of a timestamp.
struct Parts {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millisecond: i64,
    /// Days since the epoch.
    days: i64,
}

impl Parts {
    fn of(ms: i64) -> Self {
        let days = ms.div_euclid(DAY_MS);
        let rem = ms.rem_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(days);
        Parts {
            year,
            month,
            day,
            hour: rem / HOUR_MS,
            minute: rem % HOUR_MS / MINUTE_MS,
            second: rem % MINUTE_MS / SECOND_MS,
            millisecond: rem % SECOND_MS,
            days,
        }
    }

    /// 0 = Sunday ... 6 = Saturday (1970-01-01 was a Thursday).
    fn weekday(&self) -> i64 {
        (self.days + 4).rem_euclid(7)
    }

    fn day_of_year(&self) -> i64 {
        self.days - days_from_civil(self.year, 1, 1) + 1
    }

    /// ISO 8601 (week, week-based year): weeks start on Monday, week 1 holds
    /// the year's first Thursday.
    fn iso_week(&self) -> (i64, i64) {
        let iso_weekday = (self.weekday() + 6) % 7 + 1; // Monday 1 ... Sunday 7
        let thursday = Parts::of((self.days + 4 - iso_weekday) * DAY_MS);
        ((thursday.day_of_year() - 1) / 7 + 1, thursday.year)
    }
}

fn iso_string(ms: i64) -> String {
    let p = Parts::of(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.millisecond
    )
}

fn in_range(ms: i64) -> Option<i64> {
    (MIN_MS..=MAX_MS).contains(&ms).then_some(ms)
}

/// A timestamp as an ISO string, or `null` outside the valid range.
fn iso_value(ms: Option<i64>) -> Value {
    ms.and_then(in_range)
        .map_or(Value::Null, |ms| Value::String(iso_string(ms)))
}

// ---------------------------------------------------------------------------
// Parsing dates.

/// The fields of a date string as written.
pub(super) struct DateString {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millisecond: i64,
    offset_minutes: i64,
}

impl DateString {
    fn timestamp(&self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || !(1..=31).contains(&self.day)
            || self.hour > 24
            || self.minute > 59
            || self.second > 59
        {
            return None;
        }
        let days = days_overflowing(self.year, self.month, self.day)?;
        let ms = days.checked_mul(DAY_MS)?.checked_add(
            self.hour * HOUR_MS
                + self.minute * MINUTE_MS
                + self.second * SECOND_MS
                + self.millisecond
                - self.offset_minutes * MINUTE_MS,
        )?;
        in_range(ms)
    }
}

/// Reads between `min` and `max` ASCII digits at `i`: (value, count).
fn digits(b: &[u8], i: usize, min: usize, max: usize) -> Option<(i64, usize)> {
    let n = b
        .get(i..)?
        .iter()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    let v = b[i..i + n]
        .iter()
        .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'));
    Some((v, n))
}

/// Parses the date string formats ArangoDB accepts (see the module docs).
/// Checks the format only: "2015-02-31" parses (and later overflows to March).
pub(super) fn parse_date_string(s: &str) -> Option<DateString> {
    let b = s.trim().as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (year, n) = digits(b, i, 1, 6)?;
    i += n;
    let mut d = DateString {
        year: if negative { -year } else { year },
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        millisecond: 0,
        offset_minutes: 0,
    };
    let mut full_date = false;
    if b.get(i) == Some(&b'-') {
        let (month, n) = digits(b, i + 1, 1, 2)?;
        d.month = month;
        i += 1 + n;
        if b.get(i) == Some(&b'-') {
            let (day, n) = digits(b, i + 1, 1, 2)?;
            d.day = day;
            i += 1 + n;
            full_date = true;
        }
    }
    if full_date && matches!(b.get(i), Some(b'T' | b't' | b' ')) {
        let (hour, n) = digits(b, i + 1, 1, 2)?;
        i += 1 + n;
        if b.get(i) != Some(&b':') {
            return None;
        }
        let (minute, n) = digits(b, i + 1, 1, 2)?;
        i += 1 + n;
        d.hour = hour;
        d.minute = minute;
        if b.get(i) == Some(&b':') {
            let (second, n) = digits(b, i + 1, 1, 2)?;
            i += 1 + n;
            d.second = second;
            if b.get(i) == Some(&b'.') {
                // Milliseconds are the first three fraction digits; further digits
                // are accepted and ignored (counted, never accumulated).
                let (mut ms, m) = digits(b, i + 1, 1, 3)?;
                for _ in m..3 {
                    ms *= 10;
                }
                let rest = b[i + 1 + m..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                d.millisecond = ms;
                i += 1 + m + rest;
            }
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let (h, n) = digits(b, i + 1, 1, 2)?;
            i += 1 + n;
            let mut m = 0;
            if b.get(i) == Some(&b':') {
                let (mm, n) = digits(b, i + 1, 2, 2)?;
                m = mm;
                i += 1 + n;
            } else if let Some((mm, 2)) = digits(b, i, 2, 2) {
                m = mm;
                i += 2;
            }
            d.offset_minutes = if sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            };
        }
        _ => {}
    }
    (i == b.len()).then_some(d)
}

/// A date argument (timestamp or date string) as a timestamp in range.
fn timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let f = value::as_f64(n);
            if !f.is_finite() {
                return None;
            }
            in_range(f.trunc() as i64)
        }
        Value::String(s) => parse_date_string(s)?.timestamp(),
        _ => None,
    }
}

/// Checks the optional timezone argument at `i`: absent, null or UTC.
fn check_timezone(args: &[Value], i: usize) -> Result<(), QueryError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(tz)) if is_utc(tz) => Ok(()),
        Some(other) => Err(QueryError::runtime(format!(
            "unsupported timezone {}: ThemisDB's date functions work in UTC only; \
             pass \"UTC\" or leave the timezone out",
            value::to_json(other)
        ))),
    }
}

fn is_utc(tz: &str) -> bool {
    [
        "UTC",
        "Etc/UTC",
        "GMT",
        "Etc/GMT",
        "Z",
        "Zulu",
        "Universal",
        "Etc/Universal",
    ]
    .iter()
    .any(|u| u.eq_ignore_ascii_case(tz))
}

// ---------------------------------------------------------------------------
// Construction and conversion.

fn date_now(_: Vec<Value>) -> Result<Value, QueryError> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(Value::from(ms))
}

/// The timestamp of `DATE_TIMESTAMP`/`DATE_ISO8601`: one date argument, or
/// year, month, day and optional time components.
fn date_from_args(args: &[Value]) -> Option<i64> {
    if args.len() == 1 {
        return timestamp(&args[0]);
    }
    if args.len() < 3 || args.iter().any(|a| !a.is_number() && !a.is_string()) {
        return None;
    }
    let c: Vec<i64> = (0..7).map(|i| args.get(i).map_or(0, int_arg)).collect();
    if !(0..=9999).contains(&c[0]) || c[1..].iter().any(|&x| x < 0) {
        return None;
    }
    let days = days_overflowing(c[0], c[1], c[2])?;
    let ms = days.checked_mul(DAY_MS)?.checked_add(
        c[3].checked_mul(HOUR_MS)?
            .checked_add(c[4].checked_mul(MINUTE_MS)?)?
            .checked_add(c[5].checked_mul(SECOND_MS)?)?
            .checked_add(c[6].min(999))?,
    )?;
    in_range(ms)
}

fn date_iso8601(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(iso_value(date_from_args(&args)))
}

fn date_timestamp(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(date_from_args(&args).map_or(Value::Null, Value::from))
}

/// A field of the date in argument 0, with an optional timezone at `tz`.
fn component(
    args: &[Value],
    tz: Option<usize>,
    f: impl FnOnce(&Parts) -> Value,
) -> Result<Value, QueryError> {
    if let Some(i) = tz {
        check_timezone(args, i)?;
    }
    Ok(timestamp(arg(args, 0)).map_or(Value::Null, |ms| f(&Parts::of(ms))))
}

fn date_dayofweek(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.weekday()))
}

fn date_year(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.year))
}

fn date_month(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.month))
}

fn date_day(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.day))
}

fn date_hour(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.hour))
}

fn date_minute(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.minute))
}

fn date_second(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, None, |p| Value::from(p.second))
}

fn date_millisecond(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, None, |p| Value::from(p.millisecond))
}

fn date_dayofyear(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.day_of_year()))
}

fn date_isoweek(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from(p.iso_week().0))
}

fn date_isoweekyear(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| {
        let (week, year) = p.iso_week();
        let mut o = Map::new();
        o.insert("week".to_string(), Value::from(week));
        o.insert("year".to_string(), Value::from(year));
        Value::Object(o)
    })
}

fn date_leapyear(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::Bool(is_leap(p.year)))
}

fn date_quarter(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| Value::from((p.month - 1) / 3 + 1))
}

fn date_days_in_month(args: Vec<Value>) -> Result<Value, QueryError> {
    component(&args, Some(1), |p| {
        Value::from(days_in_month(p.year, p.month))
    })
}

// ---------------------------------------------------------------------------
// Units, truncation, rounding, formatting.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Unit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

fn parse_unit(v: &Value) -> Option<Unit> {
    let Value::String(s) = v else { return None };
    Some(match s.to_ascii_lowercase().as_str() {
        "y" | "year" | "years" => Unit::Year,
        "m" | "month" | "months" => Unit::Month,
        "w" | "week" | "weeks" => Unit::Week,
        "d" | "day" | "days" => Unit::Day,
        "h" | "hour" | "hours" => Unit::Hour,
        "i" | "minute" | "minutes" => Unit::Minute,
        "s" | "second" | "seconds" => Unit::Second,
        "f" | "millisecond" | "milliseconds" => Unit::Millisecond,
        _ => return None,
    })
}

/// The fixed length of a unit in milliseconds (not for years and months).
fn unit_ms(unit: Unit) -> i64 {
    match unit {
        Unit::Week => WEEK_MS,
        Unit::Day => DAY_MS,
        Unit::Hour => HOUR_MS,
        Unit::Minute => MINUTE_MS,
        Unit::Second => SECOND_MS,
        Unit::Year | Unit::Month | Unit::Millisecond => 1,
    }
}

fn date_trunc(args: Vec<Value>) -> Result<Value, QueryError> {
    check_timezone(&args, 2)?;
    let (Some(ms), Some(unit)) = (timestamp(arg(&args, 0)), parse_unit(arg(&args, 1))) else {
        return ok_null();
    };
    let p = Parts::of(ms);
    let truncated = match unit {
        Unit::Year => days_from_civil(p.year, 1, 1) * DAY_MS,
        Unit::Month => days_from_civil(p.year, p.month, 1) * DAY_MS,
        Unit::Week => return ok_null(),
        u => ms.div_euclid(unit_ms(u)) * unit_ms(u),
    };
    Ok(iso_value(Some(truncated)))
}

fn date_round(args: Vec<Value>) -> Result<Value, QueryError> {
    check_timezone(&args, 3)?;
    let Some(ms) = timestamp(arg(&args, 0)) else {
        return ok_null();
    };
    let Value::Number(_) = arg(&args, 1) else {
        return ok_null();
    };
    let amount = int_arg(arg(&args, 1));
    let unit = match parse_unit(arg(&args, 2)) {
        Some(u @ (Unit::Day | Unit::Hour | Unit::Minute | Unit::Second | Unit::Millisecond)) => u,
        _ => return ok_null(),
    };
    if amount <= 0 {
        return ok_null();
    }
    let Some(bucket) = amount.checked_mul(unit_ms(unit)) else {
        return ok_null();
    };
    // Integer division rounds towards zero, as in ArangoDB.
    Ok(iso_value(Some(ms / bucket * bucket)))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Placeholders of `DATE_FORMAT`, longest first so that `%yyyy` wins over `%y`.
const PLACEHOLDERS: &[&str] = &[
    "yyyyyy", "yyyy", "yy", "y", "mmmm", "mmm", "mm", "m", "dd", "d", "hh", "h", "ii", "i", "ss",
    "s", "fff", "f", "xxx", "x", "kk", "k", "wwww", "www", "w", "t", "z", "l", "q", "a", "&", "%",
];

fn format_date(ms: i64, format: &str) -> String {
    let p = Parts::of(ms);
    let mut out = String::new();
    let mut rest = format;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        let end = (0..=6.min(rest.len()))
            .rev()
            .find(|&e| rest.is_char_boundary(e))
            .unwrap_or(0);
        let lower = rest[..end].to_ascii_lowercase();
        let found = PLACEHOLDERS.iter().find(|ph| lower.starts_with(*ph));
        let Some(ph) = found else {
            // A lone '%' is dropped.
            continue;
        };
        rest = &rest[ph.len()..];
        let _ = match *ph {
            "yyyyyy" => write!(
                out,
                "{}{:06}",
                if p.year < 0 { '-' } else { '+' },
                p.year.abs()
            ),
            "yyyy" if (0..=9999).contains(&p.year) => write!(out, "{:04}", p.year),
            "yyyy" => write!(
                out,
                "{}{:06}",
                if p.year < 0 { '-' } else { '+' },
                p.year.abs()
            ),
            "yy" => write!(out, "{:02}", p.year % 100),
            "y" => write!(out, "{}", p.year),
            "mmmm" => write!(out, "{}", MONTHS[(p.month - 1) as usize]),
            "mmm" => write!(out, "{}", &MONTHS[(p.month - 1) as usize][..3]),
            "mm" => write!(out, "{:02}", p.month),
            "m" => write!(out, "{}", p.month),
            "dd" => write!(out, "{:02}", p.day),
            "d" => write!(out, "{}", p.day),
            "hh" => write!(out, "{:02}", p.hour),
            "h" => write!(out, "{}", p.hour),
            "ii" => write!(out, "{:02}", p.minute),
            "i" => write!(out, "{}", p.minute),
            "ss" => write!(out, "{:02}", p.second),
            "s" => write!(out, "{}", p.second),
            "fff" => write!(out, "{:03}", p.millisecond),
            "f" => write!(out, "{}", p.millisecond),
            "xxx" => write!(out, "{:03}", p.day_of_year()),
            "x" => write!(out, "{}", p.day_of_year()),
            "kk" => write!(out, "{:02}", p.iso_week().0),
            "k" => write!(out, "{}", p.iso_week().0),
            "wwww" => write!(out, "{}", WEEKDAYS[p.weekday() as usize]),
            "www" => write!(out, "{}", &WEEKDAYS[p.weekday() as usize][..3]),
            "w" => write!(out, "{}", p.weekday()),
            "t" => write!(out, "{ms}"),
            "z" => write!(out, "{}", iso_string(ms)),
            "l" => write!(out, "{}", u8::from(is_leap(p.year))),
            "q" => write!(out, "{}", (p.month - 1) / 3 + 1),
            "a" => write!(out, "{}", days_in_month(p.year, p.month)),
            "%" => write!(out, "%"),
            _ => Ok(()), // "%&" separates placeholders from following text
        };
    }
    out.push_str(rest);
    out
}

fn date_format(args: Vec<Value>) -> Result<Value, QueryError> {
    check_timezone(&args, 2)?;
    let (Some(ms), Value::String(format)) = (timestamp(arg(&args, 0)), arg(&args, 1)) else {
        return ok_null();
    };
    Ok(Value::String(format_date(ms, format)))
}

// ---------------------------------------------------------------------------
// Date arithmetic.

/// Adds calendar months, keeping the day of the month and the time of day (a
/// day past the end of the target month overflows into the next month).
fn add_months(ms: i64, months: i64) -> Option<i64> {
    let p = Parts::of(ms);
    let days = days_overflowing(p.year, p.month.checked_add(months)?, p.day)?;
    days.checked_mul(DAY_MS)?.checked_add(ms.rem_euclid(DAY_MS))
}

/// `ms` plus `amount` units, with fractional years and months carried down as
/// in ArangoDB (a year's fraction in months, a month's fraction in 30-day days).
fn add_units(ms: i64, amount: f64, unit: Unit) -> Option<i64> {
    // Far beyond the 10,000 years of valid dates, and safe to convert to i64.
    if !amount.is_finite() || amount.abs() > 1e12 {
        return None;
    }
    let sign = if amount < 0.0 { -1.0 } else { 1.0 };
    let mut amount = amount.abs();
    let mut ms = ms;
    let mut unit = unit;
    if unit == Unit::Year {
        let whole = amount.trunc();
        ms = add_months(ms, (sign * whole) as i64 * 12)?;
        amount = (amount - whole) * 12.0;
        unit = Unit::Month;
    }
    if unit == Unit::Month {
        let whole = amount.trunc();
        ms = add_months(ms, (sign * whole) as i64)?;
        amount = (amount - whole) * 30.0;
        unit = Unit::Day;
    }
    let delta = sign * amount * unit_ms(unit) as f64;
    if !delta.is_finite() || delta.abs() > 1e16 {
        return None;
    }
    ms.checked_add(delta.round() as i64)
}

/// An ISO 8601 duration `PnYnMnWnDTnHnMn.fffS` as (years, months, ms of the
/// fixed-length parts).
fn parse_duration(s: &str) -> Option<(i64, i64, i64)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'P') {
        return None;
    }
    let (mut years, mut months, mut fixed) = (0i64, 0i64, 0i64);
    let mut i = 1;
    let mut in_time = false;
    let mut last_rank = 0; // enforce the order Y M W D T H M S
    while i < b.len() {
        if b[i] == b'T' && !in_time {
            in_time = true;
            last_rank = 4;
            i += 1;
            if i == b.len() {
                return None;
            }
            continue;
        }
        let (n, len) = digits(b, i, 1, 12)?;
        i += len;
        let mut millis = 0;
        if in_time && b.get(i) == Some(&b'.') {
            let (frac, flen) = digits(b, i + 1, 1, 3)?;
            millis = frac * [100, 10, 1][flen - 1];
            i += 1 + flen;
            if b.get(i) != Some(&b'S') {
                return None;
            }
        }
        let designator = *b.get(i)?;
        i += 1;
        let rank = match (in_time, designator) {
            (false, b'Y') => 1,
            (false, b'M') => 2,
            (false, b'W') => 3,
            (false, b'D') => 4,
            (true, b'H') => 5,
            (true, b'M') => 6,
            (true, b'S') => 7,
            _ => return None,
        };
        if rank <= last_rank {
            return None;
        }
        last_rank = rank;
        match rank {
            1 => years = n,
            2 => months = n,
            3 => fixed = fixed.checked_add(n.checked_mul(WEEK_MS)?)?,
            4 => fixed = fixed.checked_add(n.checked_mul(DAY_MS)?)?,
            5 => fixed = fixed.checked_add(n.checked_mul(HOUR_MS)?)?,
            6 => fixed = fixed.checked_add(n.checked_mul(MINUTE_MS)?)?,
            _ => fixed = fixed.checked_add(n.checked_mul(SECOND_MS)?.checked_add(millis)?)?,
        }
    }
    Some((years, months, fixed))
}

fn date_add_or_subtract(args: Vec<Value>, sign: i64) -> Result<Value, QueryError> {
    let Some(ms) = timestamp(arg(&args, 0)) else {
        return ok_null();
    };
    if let Value::String(s) = arg(&args, 1) {
        if let Some((years, months, fixed)) = parse_duration(s) {
            if args.len() > 3 {
                return ok_null();
            }
            check_timezone(&args, 2)?;
            let result = years
                .checked_mul(12)
                .and_then(|m| m.checked_add(months))
                .and_then(|m| add_months(ms, sign * m))
                .and_then(|t| t.checked_add(sign * fixed));
            return Ok(iso_value(result));
        }
    }
    let (amount, unit) = match (parse_unit(arg(&args, 2)), parse_unit(arg(&args, 1))) {
        (Some(unit), _) => (arg(&args, 1), unit),
        (None, Some(unit)) => (arg(&args, 2), unit),
        (None, None) => return ok_null(),
    };
    check_timezone(&args, 3)?;
    let amount = match amount {
        Value::Number(n) => value::as_f64(n),
        Value::String(s) => match value::parse_number(s) {
            Some(f) if f.is_finite() => f,
            _ => return ok_null(),
        },
        _ => return ok_null(),
    };
    Ok(iso_value(add_units(ms, sign as f64 * amount, unit)))
}

fn date_add(args: Vec<Value>) -> Result<Value, QueryError> {
    date_add_or_subtract(args, 1)
}

fn date_subtract(args: Vec<Value>) -> Result<Value, QueryError> {
    date_add_or_subtract(args, -1)
}

fn date_diff(args: Vec<Value>) -> Result<Value, QueryError> {
    // Argument 4 is asFloat or (as in ArangoDB) already a timezone.
    let as_float = match args.get(3) {
        Some(Value::String(_)) => {
            check_timezone(&args, 3)?;
            false
        }
        _ => flag(&args, 3, false),
    };
    check_timezone(&args, 4)?;
    check_timezone(&args, 5)?;
    let (Some(t1), Some(t2), Some(unit)) = (
        timestamp(arg(&args, 0)),
        timestamp(arg(&args, 1)),
        parse_unit(arg(&args, 2)),
    ) else {
        return ok_null();
    };
    let length = match unit {
        Unit::Year => YEAR_MS,
        Unit::Month => YEAR_MS / 12.0,
        u => unit_ms(u) as f64,
    };
    let diff = (t2 - t1) as f64 / length;
    if as_float {
        Ok(value::number(diff))
    } else {
        Ok(value::number(diff.round()))
    }
}

fn date_compare(args: Vec<Value>) -> Result<Value, QueryError> {
    let (Some(t1), Some(t2)) = (timestamp(arg(&args, 0)), timestamp(arg(&args, 1))) else {
        return ok_null();
    };
    let Some(start) = parse_unit(arg(&args, 2)).filter(|u| *u != Unit::Week) else {
        return ok_null();
    };
    // Argument 3 is the end of the range, or (as in ArangoDB) a timezone.
    let (end, tz_from) = match args.get(3).map(parse_unit) {
        Some(Some(end)) => (end, 4),
        Some(None) => (start, 3),
        None => (start, 4),
    };
    for i in tz_from..args.len() {
        check_timezone(&args, i)?;
    }
    if end == Unit::Week || end < start {
        return ok_null();
    }
    let (a, b) = (Parts::of(t1), Parts::of(t2));
    let fields = [
        (Unit::Year, a.year, b.year),
        (Unit::Month, a.month, b.month),
        (Unit::Day, a.day, b.day),
        (Unit::Hour, a.hour, b.hour),
        (Unit::Minute, a.minute, b.minute),
        (Unit::Second, a.second, b.second),
        (Unit::Millisecond, a.millisecond, b.millisecond),
    ];
    ok_bool(
        fields
            .iter()
            .filter(|(u, _, _)| *u >= start && *u <= end)
            .all(|(_, x, y)| x == y),
    )
}

fn date_timezone(_: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::String("UTC".to_string()))
}
