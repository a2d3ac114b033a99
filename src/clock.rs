//! Time: the one source of "now" (shiftable, so tests can move time forward
//! instead of sleeping) and the one timestamp format of the API.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub const SECOND: Micros = 1_000_000;
pub const MINUTE: Micros = 60 * SECOND;
pub const DAY: Micros = 86_400 * SECOND;

/// Wall clock plus an offset. Production never shifts it; tests do, to expire
/// throttles, codes and tokens without sleeping.
#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> Micros {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        real + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock forward (or back) by `by` microseconds.
    pub fn shift(&self, by: Micros) {
        self.offset.fetch_add(by, Ordering::Relaxed);
    }
}

/// Formats a timestamp the way the API shows it: `2024-08-17T08:05:00.000000Z`.
pub fn format(ts: Micros) -> String {
    let secs = ts.div_euclid(SECOND);
    let micros = ts.rem_euclid(SECOND);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The local date (`YYYY-MM-DD`) of `ts` at `offset_secs` east of UTC.
pub fn local_date(ts: Micros, offset_secs: i32) -> String {
    let days = (ts.div_euclid(SECOND) + i64::from(offset_secs)).div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The instant a local date (`YYYY-MM-DD`, `offset_secs` east of UTC)
/// begins; None if `date` is not a real date.
pub fn local_midnight(date: &str, offset_secs: i32) -> Option<Micros> {
    if !is_date(date) {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (date[0..4].parse().ok()?, date[5..7].parse().ok()?, date[8..10].parse().ok()?);
    Some((days_from_civil(y, m, d) * 86_400 - i64::from(offset_secs)) * SECOND)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An HTTP date (RFC 9110 IMF-fixdate) of a Unix time in seconds:
/// `Sun, 22 Nov 2026 08:05:00 GMT`.
pub fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    format!("{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} GMT", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Whether `text` is a real calendar date written `YYYY-MM-DD`.
pub fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| text.get(r).filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?.parse::<i64>().ok();
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else { return false };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month[(m - 1) as usize]
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_334_700), "Sun, 22 Nov 2026 08:05:00 GMT");
    }

    #[test]
    fn formats_like_the_seed() {
        // 2024-08-17T08:05:00Z, the seed's example timestamp.
        assert_eq!(format(1_723_881_900 * SECOND), "2024-08-17T08:05:00.000000Z");
        assert_eq!(format(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format(951_782_400 * SECOND + 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(format(-SECOND), "1969-12-31T23:59:59.000000Z");
    }

    #[test]
    fn local_dates_follow_the_offset() {
        let t = 1_723_939_200 * SECOND; // 2024-08-18T00:00:00Z
        assert_eq!(local_date(t, 0), "2024-08-18");
        assert_eq!(local_date(t - 1, 0), "2024-08-17");
        assert_eq!(local_date(t - 1, 7 * 3600), "2024-08-18");
        assert_eq!(local_date(t, -3600), "2024-08-17");
        assert!(is_date("2024-02-29") && !is_date("2023-02-29") && !is_date("2024-13-01") && !is_date("24-01-01"));
    }

    #[test]
    fn shift_moves_now() {
        let clock = Clock::default();
        let before = clock.now();
        clock.shift(DAY);
        assert!(clock.now() - before >= DAY);
    }

    #[test]
    fn local_midnights() {
        assert_eq!(local_midnight("1970-01-01", 0), Some(0));
        assert_eq!(local_midnight("2024-08-17", 0).map(format).as_deref(), Some("2024-08-17T00:00:00.000000Z"));
        assert_eq!(local_midnight("2024-08-17", 7 * 3600).map(format).as_deref(), Some("2024-08-16T17:00:00.000000Z"));
        assert_eq!(local_midnight("2024-03-01", 0).map(|t| local_date(t, 0)).as_deref(), Some("2024-03-01"));
        assert_eq!(local_midnight("2024-02-30", 0), None);
        for day in ["2000-02-29", "1999-12-31", "2100-03-01", "2026-11-27"] {
            assert_eq!(local_date(local_midnight(day, -5 * 3600).unwrap(), -5 * 3600), day);
        }
    }
}
