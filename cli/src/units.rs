//! Parsing sizes and CPU amounts the way people type them (durations:
//! `berth_proto::units`, shared with the daemons' flags).

pub use berth_proto::units::parse_duration_ms;

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
