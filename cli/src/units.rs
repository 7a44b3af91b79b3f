//! Parsing sizes and CPU amounts the way people type them.

/// "512m", "1g", "1.5GiB", "100000" (bytes) -> bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number like 512m or 1g"))?;
    let factor: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use k, m, g or t)"
            ));
        }
    };
    Ok((value * factor).round() as u64)
}

/// "0.5", "2" -> milli-CPUs.
pub fn parse_cpus(s: &str) -> Result<u64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU amount {s:?}: expected a number like 0.5 or 2"))?;
    if !(value > 0.0 && value <= 4096.0) {
        return Err(format!("invalid CPU amount {s:?}: must be above 0"));
    }
    Ok((value * 1000.0).round() as u64)
}

/// "500ms", "1s", "1m30s", "2h", "1.5s", or a bare number of seconds ("10")
/// -> milliseconds.
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

/// 4294967296 -> "4 GiB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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
        assert!(
            parse_duration_ms("3d")
                .unwrap_err()
                .contains("unknown unit \"d\"")
        );
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_size("1.5GiB"), Ok(1610612736));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12x").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn cpus_parse_to_millis() {
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus("2"), Ok(2000));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn sizes_print_for_people() {
        assert_eq!(human_size(4 * 1024 * 1024 * 1024), "4 GiB");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
