//! Calendar arithmetic for UTC timestamps, so signing needs no date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The UTC calendar date `YYYY-MM-DD` of a Unix timestamp (proleptic Gregorian).
pub fn utc_date(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses a TencentCloud API time: `YYYY-MM-DD HH:MM:SS` in China Standard Time (UTC+8, the
/// convention of the API's `CreateTime` fields) or RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub fn parse_api_time(text: &str) -> Option<i64> {
    let (date, time, offset) = if let Some((d, t)) = text.split_once('T') {
        (d, t.strip_suffix('Z')?, 0)
    } else {
        let (d, t) = text.split_once(' ')?;
        (d, t, 8 * 3600)
    };
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Hinnant's days-from-civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + da - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
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
    fn known_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(4_107_542_399), "2100-02-28");
        assert_eq!(utc_date(-1), "1969-12-31");
    }

    #[test]
    fn api_times() {
        assert_eq!(parse_api_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_api_time("1970-01-01 08:00:00"), Some(0));
        assert_eq!(parse_api_time("2019-02-25 16:44:25"), Some(1_551_084_265));
        for t in [
            utc_date(1_700_000_000),
            "2020-13-01 00:00:00".into(),
            "junk".into(),
            "2020-01-01 25:00:00".into(),
        ] {
            assert_eq!(parse_api_time(&t), None, "{t}");
        }
    }
}
