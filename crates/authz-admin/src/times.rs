//! The times and durations of the command line (`--ttl`, `--since`, `--expires-at`, …) and
//! the RFC 3339 times printed.

/// Parses `300`, `300s`, `15m`, `2h`, `1d` (also `1h30m` and humantime's long unit names such as
/// `15min`) into a positive number of seconds. A bare number is seconds; units below a second
/// and above a day (`ms`, `w`, `M`, `y`) are refused, as before humantime parsed these.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: [&str; 19] = [
        "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes", "h",
        "hr", "hrs", "hour", "hours", "d", "day", "days", "",
    ];
    let s = s.trim();
    let not_a_duration = || format!("`{s}` is not a duration (e.g. 300s, 15m, 1h)");
    if s.is_empty() {
        return Err(not_a_duration());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().map_err(|_| not_a_duration())?;
        return Some(n)
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("`{s}` must be a positive duration"));
    }
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(not_a_duration());
    }
    for unit in s.split(|c: char| c.is_ascii_digit() || c.is_whitespace()) {
        if !UNITS.contains(&unit) {
            return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)"));
        }
    }
    let duration = humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("`{s}` must be a positive duration")
        }
        _ => not_a_duration(),
    })?;
    i64::try_from(duration.as_secs())
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("`{s}` must be a positive duration"))
}

/// Parses `--since`: an RFC 3339 time, or a duration ago.
pub fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(ms) = parse_rfc3339(s) {
        return Ok(Since::At(ms));
    }
    parse_duration(s)
        .map(Since::Ago)
        .map_err(|_| format!("`{s}` is neither a duration (15m, 2h) nor an RFC 3339 time"))
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("`{s}` is out of range"))
}

/// A time given as a duration ago or an absolute time (`--since`, `--until`, `--before`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This many seconds before the command runs.
    Ago(i64),
    /// This Unix time in milliseconds.
    At(i64),
}

impl Since {
    /// The bound as Unix milliseconds, given the current time.
    pub fn to_unix_ms(self, now_ms: i64) -> i64 {
        match self {
            Since::Ago(secs) => now_ms.saturating_sub(secs.saturating_mul(1000)),
            Since::At(ms) => ms,
        }
    }
}

/// A time given as a duration from now or an absolute time (`token revoke --expires-at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// This many seconds after the command runs.
    In(i64),
    /// This Unix time in milliseconds.
    At(i64),
}

impl Until {
    /// The time as Unix milliseconds, given the current time.
    pub fn to_unix_ms(self, now_ms: i64) -> i64 {
        match self {
            Until::In(secs) => now_ms.saturating_add(secs.saturating_mul(1000)),
            Until::At(ms) => ms,
        }
    }
}

/// Parses `--expires-at`: an RFC 3339 time, or a duration from now.
pub fn parse_until(s: &str) -> Result<Until, String> {
    if let Ok(ms) = parse_rfc3339(s) {
        return Ok(Until::At(ms));
    }
    parse_duration(s)
        .map(Until::In)
        .map_err(|_| format!("`{s}` is neither a duration (15m, 24h) nor an RFC 3339 time"))
}

/// Formats Unix milliseconds as RFC 3339 UTC.
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").ok(), Some(300));
        assert_eq!(parse_duration("15m").ok(), Some(900));
        assert_eq!(parse_duration("2h").ok(), Some(7200));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
        assert_eq!(parse_duration(" 1h30m ").ok(), Some(5400));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("500ms").is_err());
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        assert_eq!(parse_since("15m").ok(), Some(Since::Ago(900)));
        assert_eq!(
            parse_since("2024-01-01T00:00:00Z").ok(),
            Some(Since::At(1_704_067_200_000))
        );
        assert!(parse_since("yesterday").is_err());
        assert_eq!(Since::Ago(2).to_unix_ms(10_000), 8_000);
    }
}
