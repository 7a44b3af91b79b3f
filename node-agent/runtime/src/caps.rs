//! Capabilities: the five sets of the spec, or Docker's default set when the
//! spec names none.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("unknown capability {0}")]
    Unknown(String),
    #[error("failed to set the {set} capabilities: {source}")]
    Set {
        set: &'static str,
        source: caps::errors::CapsError,
    },
}

/// Docker's default capability set (the agent's is
/// `berth_proto::capabilities::DOCKER_DEFAULT`, the same list).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The five sets to apply.
#[derive(Debug, Clone, Default)]
pub struct Sets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn convert(set: Option<&Capabilities>) -> Result<CapsHashSet, CapsError> {
    let mut out = HashSet::new();
    for cap in set.into_iter().flatten() {
        let name = format!("CAP_{cap}");
        match Capability::from_str(&name) {
            Ok(c) => {
                out.insert(c);
            }
            // A capability this kernel binding does not know: skip it, as runc
            // does for capabilities the running kernel lacks.
            Err(_) if name.starts_with("CAP_") => {}
            Err(_) => return Err(CapsError::Unknown(name)),
        }
    }
    // Only what the running kernel has.
    let known = caps::runtime::thread_all_supported();
    Ok(out.intersection(&known).copied().collect())
}

impl Sets {
    pub fn from_spec(spec: Option<&LinuxCapabilities>) -> Result<Sets, CapsError> {
        let Some(c) = spec else {
            let docker: CapsHashSet = DOCKER_DEFAULT
                .iter()
                .filter_map(|n| Capability::from_str(n).ok())
                .collect();
            return Ok(Sets {
                bounding: docker.clone(),
                effective: docker.clone(),
                inheritable: HashSet::new(),
                permitted: docker,
                ambient: HashSet::new(),
            });
        };
        Ok(Sets {
            bounding: convert(c.bounding().as_ref())?,
            effective: convert(c.effective().as_ref())?,
            inheritable: convert(c.inheritable().as_ref())?,
            permitted: convert(c.permitted().as_ref())?,
            ambient: convert(c.ambient().as_ref())?,
        })
    }

    /// Drops from the bounding set what is not in it. Needs CAP_SETPCAP, so it runs
    /// before the user change.
    pub fn apply_bounding(&self) -> Result<(), CapsError> {
        for cap in caps::runtime::thread_all_supported() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|source| CapsError::Set {
                    set: "bounding",
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Sets effective, permitted, inheritable and ambient (after the user change,
    /// which ran with keep-caps).
    pub fn apply_rest(&self) -> Result<(), CapsError> {
        let err = |set| move |source| CapsError::Set { set, source };
        // Effective must stay within permitted at every step.
        let current_permitted = caps::read(None, CapSet::Permitted).map_err(err("permitted"))?;
        let effective_now: CapsHashSet = self
            .effective
            .intersection(&current_permitted)
            .copied()
            .collect();
        caps::set(None, CapSet::Effective, &effective_now).map_err(err("effective"))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(err("permitted"))?;
        caps::set(None, CapSet::Effective, &self.effective).map_err(err("effective"))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable).map_err(err("inheritable"))?;
        caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
        // The kernel raises an ambient capability only if it is permitted and
        // inheritable; like runc, skip the others instead of failing.
        for cap in self.ambient.intersection(&self.inheritable) {
            if self.permitted.contains(cap) {
                caps::raise(None, CapSet::Ambient, *cap).map_err(err("ambient"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_without_spec() {
        let sets = Sets::from_spec(None).expect("sets");
        assert!(sets.bounding.contains(&Capability::CAP_CHOWN));
        assert!(!sets.bounding.contains(&Capability::CAP_SYS_ADMIN));
        assert_eq!(sets.effective.len(), DOCKER_DEFAULT.len());
    }

    #[test]
    fn spec_sets_convert() {
        let sets = Sets::from_spec(Some(&LinuxCapabilities::default())).expect("sets");
        assert!(sets.ambient.contains(&Capability::CAP_KILL));
        assert_eq!(sets.bounding.len(), 3);
    }
}
