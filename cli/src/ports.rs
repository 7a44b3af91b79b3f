//! `--publish` values, in Docker's two spellings: `8080:80[/udp]` (or `80`,
//! published on the same port) and `published=8080,target=80,protocol=udp,mode=host`.

use anyhow::{Context, Result, bail};
use berth_proto::v1::{PortConfig, PortProtocol, PublishMode};

fn port(text: &str, what: &str, spec: &str) -> Result<u32> {
    let n: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("--publish {spec:?}: {what} port {text:?} is not a number"))?;
    if n == 0 || n > 65535 {
        bail!("--publish {spec:?}: {what} port {n} is out of range (1-65535)");
    }
    Ok(n)
}

fn protocol(text: &str, spec: &str) -> Result<PortProtocol> {
    match text {
        "tcp" => Ok(PortProtocol::Tcp),
        "udp" => Ok(PortProtocol::Udp),
        other => bail!("--publish {spec:?}: protocol {other:?} is neither tcp nor udp"),
    }
}

pub fn parse_publish(spec: &str) -> Result<PortConfig> {
    let mut config = PortConfig::default();
    if spec.contains('=') {
        let mut target = None;
        for field in spec.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                bail!("--publish {spec:?}: {field:?} is not KEY=VALUE");
            };
            match key.trim() {
                "published" => config.published_port = port(value, "published", spec)?,
                "target" => target = Some(port(value, "target", spec)?),
                "protocol" => config.protocol = protocol(value.trim(), spec)? as i32,
                "mode" => {
                    config.publish_mode = match value.trim() {
                        "ingress" => PublishMode::Ingress,
                        "host" => PublishMode::Host,
                        other => {
                            bail!("--publish {spec:?}: mode {other:?} is neither ingress nor host")
                        }
                    } as i32
                }
                other => bail!(
                    "--publish {spec:?}: unknown key {other:?} (published, target, protocol, mode)"
                ),
            }
        }
        config.target_port = target.with_context(|| format!("--publish {spec:?}: no target"))?;
        if config.published_port == 0 {
            config.published_port = config.target_port;
        }
        return Ok(config);
    }
    let (ports, proto) = match spec.split_once('/') {
        Some((ports, proto)) => (ports, protocol(proto, spec)?),
        None => (spec, PortProtocol::Tcp),
    };
    config.protocol = proto as i32;
    match ports.split_once(':') {
        Some((published, target)) => {
            config.published_port = port(published, "published", spec)?;
            config.target_port = port(target, "target", spec)?;
        }
        None => {
            config.target_port = port(ports, "target", spec)?;
            config.published_port = config.target_port;
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!((p.published_port, p.target_port), (8080, 80));
        assert_eq!(p.protocol, PortProtocol::Tcp as i32);
        assert_eq!(p.publish_mode, PublishMode::Ingress as i32);
        let p = parse_publish("53:5353/udp").unwrap();
        assert_eq!(p.protocol, PortProtocol::Udp as i32);
        assert_eq!((p.published_port, p.target_port), (53, 5353));
        let p = parse_publish("80").unwrap();
        assert_eq!((p.published_port, p.target_port), (80, 80));
        let p = parse_publish("published=9000,target=90,mode=host,protocol=udp").unwrap();
        assert_eq!((p.published_port, p.target_port), (9000, 90));
        assert_eq!(p.publish_mode, PublishMode::Host as i32);
        assert_eq!(p.protocol, PortProtocol::Udp as i32);
    }

    #[test]
    fn bad_values_name_what_is_wrong() {
        for (spec, want) in [
            ("8080:0", "out of range"),
            ("x:80", "not a number"),
            ("80/sctp", "neither tcp nor udp"),
            ("published=80", "no target"),
            ("target=80,mode=mesh", "neither ingress nor host"),
            ("target=80,color=red", "unknown key"),
        ] {
            let err = parse_publish(spec).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }
}
