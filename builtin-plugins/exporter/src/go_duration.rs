//! Go's `time.ParseDuration` syntax for duration keys (`es.bulk.flushTimeout: "30s"`).

use std::time::Duration;

/// Parses a Go duration: a sequence of decimal numbers (fractions allowed), each with a
/// unit `ns`, `us`/`µs`, `ms`, `s`, `m` or `h` (`"1m30s"`, `"1.5s"`, `"0"`). Negative
/// durations are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| format!("invalid duration '{text}' (expected e.g. 30s, 1m30s, 500ms)"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("invalid duration '{text}': missing unit after {number} (use ns, us, ms, s, m or h)")),
            other => return Err(format!("invalid duration '{text}': unknown unit '{other}' (use ns, us, ms, s, m or h)")),
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("invalid duration '{text}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("30").unwrap_err().contains("missing unit"));
        assert!(parse_go_duration("3d").unwrap_err().contains("unknown unit 'd'"));
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
