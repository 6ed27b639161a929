//! The times and durations of the command line (`--ttl`, `--since`, `--expires-at`, …) and
//! the RFC 3339 times printed.

/// Parses `300`, `300s`, `15m`, `2h`, `1d` into a positive number of seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 300s, 15m, 1h)"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(mul)
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
