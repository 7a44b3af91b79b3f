//! The small value syntaxes of a Compose file, each a plain function with the
//! message a user sees when the text is not one: Go durations, docker's byte
//! sizes (RAMInBytes), CPU amounts, permission modes, short port and volume
//! specs.

use std::time::Duration;

/// Go's `time.ParseDuration` (what docker reads Compose durations with):
/// `1h2m3s`, `500ms`, `10us`, `1.5s`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 1h2m3s, 500ms, 10us or 1.5s, found {s:?}");
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.starts_with('-') {
        return Err(format!("a duration cannot be negative, found {s:?}"));
    }
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let factor = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * factor;
        rest = next;
    }
    if !nanos.is_finite() || nanos >= u64::MAX as f64 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// A duration as Go prints it (`1m30s`, `500ms`, `10µs`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_float(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_float(nanos as f64 / 1e6));
    }
    let total_secs = d.as_secs();
    let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
    let secs = (total_secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", trim_float(secs)));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// docker/go-units `RAMInBytes`: a number with an optional unit b, k, m, g,
/// t or p (binary, any case, an optional `b` or `ib` after it), fractions
/// allowed (`1.5g`); the result is truncated to whole bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a size like 512m, 1.5g or 1024 (bytes), found {s:?}");
    let t = s.trim().to_ascii_lowercase();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_start_matches(' ');
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(bad()),
    };
    let bytes = value * 1024f64.powi(power);
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// `0.5`, `2` (CPUs) -> milli-CPUs.
pub fn parse_cpus(s: &str) -> Result<u64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of CPUs like 0.5 or 2, found {s:?}"))?;
    if !(value.is_finite() && value > 0.0 && value <= 1_000_000.0) {
        return Err(format!("a number of CPUs must be above 0, found {s:?}"));
    }
    Ok((value * 1000.0).round() as u64)
}

/// A file mode: octal when written with a leading 0 or `0o` (`0440`, as
/// docker reads it), else decimal (YAML already read `0o440` as a number).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let bad = || format!("expected a file mode like 0440, found {s:?}");
    let mode = if let Some(oct) = t.strip_prefix("0o") {
        u32::from_str_radix(oct, 8).map_err(|_| bad())?
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).map_err(|_| bad())?
    } else {
        t.parse().map_err(|_| bad())?
    };
    if mode > 0o7777 {
        return Err(format!("mode {s} is not a permission mode (0 to 07777)"));
    }
    Ok(mode)
}

/// A port of 1-65535.
pub fn parse_port(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n),
        Ok(n) => Err(format!("port {n} is out of range (1-65535)")),
        Err(_) => Err(format!("expected a port number, found {s:?}")),
    }
}

/// One port of a short port spec, ranges expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortPort {
    pub host_ip: Option<String>,
    /// None: `80` alone, no published port.
    pub published: Option<u32>,
    pub target: u32,
    pub protocol: String,
}

fn port_range(s: &str) -> Result<(u32, u32), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            if b < a {
                return Err(format!("port range {s} ends before it starts"));
            }
            Ok((a, b))
        }
        None => parse_port(s).map(|p| (p, p)),
    }
}

/// `[ip:]published[-range]:target[-range][/proto]` or `target[-range][/proto]`.
pub fn parse_short_port(spec: &str) -> Result<Vec<ShortPort>, String> {
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!(
            "port {spec:?}: protocol {protocol:?} is neither tcp nor udp"
        ));
    }
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let (host_ip, published, target) = match parts.as_slice() {
        [target] => (None, None, *target),
        [target, published] => (None, Some(*published), *target),
        [target, published, ip] => (
            Some(ip.trim_matches(['[', ']']).to_string()),
            Some(*published),
            *target,
        ),
        _ => {
            return Err(format!(
                "port {spec:?}: expected [IP:]PUBLISHED:TARGET[/PROTOCOL]"
            ));
        }
    };
    let with_spec = |e: String| format!("port {spec:?}: {e}");
    let (t0, t1) = port_range(target).map_err(with_spec)?;
    let published = match published {
        Some(p) if !p.is_empty() => Some(port_range(p).map_err(with_spec)?),
        _ => None,
    };
    if let Some((p0, p1)) = published
        && p1 - p0 != t1 - t0
    {
        return Err(format!(
            "port {spec:?}: the published and target ranges differ in length"
        ));
    }
    Ok((0..=t1 - t0)
        .map(|i| ShortPort {
            host_ip: host_ip.clone().filter(|ip| !ip.is_empty()),
            published: published.map(|(p0, _)| p0 + i),
            target: t0 + i,
            protocol: protocol.clone(),
        })
        .collect())
}

/// A short volume spec: `target`, `source:target` or `source:target:options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortVolume {
    pub source: Option<String>,
    pub target: String,
    /// The comma-separated options (`ro`, `rw`, `z`, `nocopy`, ...).
    pub options: Vec<String>,
}

pub fn parse_short_volume(spec: &str) -> Result<ShortVolume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, options] => (Some(*source), *target, *options),
        _ => {
            return Err(format!(
                "volume {spec:?}: expected [SOURCE:]TARGET[:OPTIONS]"
            ));
        }
    };
    if target.is_empty() || source == Some("") {
        return Err(format!(
            "volume {spec:?}: expected [SOURCE:]TARGET[:OPTIONS]"
        ));
    }
    Ok(ShortVolume {
        source: source.map(str::to_string),
        target: target.to_string(),
        options: options
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = |s| parse_duration(s).map(|d| d.as_nanos());
        assert_eq!(ms("1h2m3s"), Ok(3_723_000_000_000));
        assert_eq!(ms("500ms"), Ok(500_000_000));
        assert_eq!(ms("10us"), Ok(10_000));
        assert_eq!(ms("10µs"), Ok(10_000));
        assert_eq!(ms("1.5s"), Ok(1_500_000_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("1m30s"), Ok(90_000_000_000));
        for bad in ["", "10", "forever", "1d", "s", "1.s.", "-1s", ".s", "1m30"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("forever").unwrap_err().contains("1h2m3s"));
    }

    #[test]
    fn durations_print_as_go_does() {
        for s in [
            "0s", "1h2m3s", "500ms", "10µs", "1.5s", "1m30s", "2h0m0s", "5ns",
        ] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn byte_sizes_as_docker_reads_them() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("2KiB"), Ok(2048));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("100b"), Ok(100));
        assert_eq!(parse_bytes("1t"), Ok(1 << 40));
        for bad in ["", "lots", "1x", "-1m", ".5m", "1.m", "1mm"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpus_and_modes() {
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus("2"), Ok(2000));
        assert!(parse_cpus("0").is_err() && parse_cpus("x").is_err());
        assert_eq!(parse_mode("0440"), Ok(0o440));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        assert_eq!(parse_mode("288"), Ok(288));
        assert!(parse_mode("0999").is_err() && parse_mode("99999").is_err());
    }

    #[test]
    fn short_ports() {
        let p = parse_short_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            p,
            vec![ShortPort {
                host_ip: Some("127.0.0.1".into()),
                published: Some(8080),
                target: 80,
                protocol: "udp".into()
            }]
        );
        let p = parse_short_port("9000-9001:90-91").unwrap();
        assert_eq!(
            p.iter()
                .map(|p| (p.published, p.target))
                .collect::<Vec<_>>(),
            vec![(Some(9000), 90), (Some(9001), 91)]
        );
        assert_eq!(parse_short_port("80").unwrap()[0].published, None);
        for bad in ["0:80", "80:x", "1-3:1-2", "80/sctp", "70000", "a:b:c:d"] {
            assert!(parse_short_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_volumes() {
        let v = parse_short_volume("./data:/data:ro,z").unwrap();
        assert_eq!(v.source.as_deref(), Some("./data"));
        assert_eq!(v.target, "/data");
        assert_eq!(v.options, ["ro", "z"]);
        assert_eq!(parse_short_volume("/anon").unwrap().source, None);
        assert!(parse_short_volume("a:b:c:d").is_err());
        assert!(parse_short_volume(":/x").is_err());
    }
}
