//! Durations the way people write them, for every flag and file that takes
//! one (the CLI's, the daemons', stack files): Docker's `500ms`, `10s`,
//! `1m30s`, plus days for certificate lifetimes; a bare number is seconds.

/// "500ms", "1s", "1m30s", "2h", "90d", "1.5s", or a bare number of seconds
/// ("10") -> milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid duration {s:?}: {why} (like 500ms, 10s, 1m30s)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(secs) = t.parse::<f64>() {
        return finite_ms(secs * 1000.0).ok_or_else(|| bad("out of range"));
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        let (num, tail) = rest.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad("expected a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let factor = match unit {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        total += value * factor;
        rest = next;
    }
    finite_ms(total).ok_or_else(|| bad("out of range"))
}

fn finite_ms(ms: f64) -> Option<u64> {
    (ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64).then(|| ms.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_docker_writes_them() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1s"), Ok(1000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("10"), Ok(10_000), "bare seconds");
        assert_eq!(parse_duration_ms("0"), Ok(0));
        for bad in ["", "s", "10x", "-1", "1m30", "ms5"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration_ms("90d"), Ok(90 * 86_400_000));
        assert!(
            parse_duration_ms("3w")
                .unwrap_err()
                .contains("unknown unit \"w\"")
        );
    }
}
