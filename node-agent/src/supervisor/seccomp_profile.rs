//! Seccomp profiles in Docker's JSON format, turned into the OCI spec's
//! `LinuxSeccomp` for one task the way Docker does it (moby/profiles
//! `seccomp/seccomp_linux.go`, `setupSeccomp`): the host's architecture picks
//! its `archMap` entry, and each rule is kept or left out by its `includes` and
//! `excludes` on the task's capabilities, the host's architecture and kernel.
//!
//! Every task gets Docker's default profile unless its service says
//! `seccomp=unconfined` or brings a profile of its own.

use std::sync::OnceLock;

use berth_proto::v1::{Seccomp, seccomp::Mode};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

/// Docker's default profile, `seccomp/default.json` of github.com/moby/profiles
/// (commit cd3bed8, file last changed in 3c28324). Copyright The Moby Authors,
/// licensed Apache-2.0 like berth; kept byte for byte so it can be compared
/// with (and replaced by) a newer upstream copy.
pub const DOCKER_DEFAULT_JSON: &str = include_str!("seccomp_default.json");

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile is not valid JSON in Docker's format: {0}")]
    Json(#[from] serde_json::Error),
    #[error("seccomp profile has syscall rules but no 'defaultAction'")]
    NoDefaultAction,
    #[error("seccomp profile gives both 'architectures' and 'archMap'")]
    BothArchitectures,
    #[error("seccomp profile rule {index} gives both 'name' and 'names'")]
    BothNames { index: usize },
    #[error("seccomp profile: minKernel {0:?} is not \"<kernel>.<major>\"")]
    MinKernel(String),
    #[error("seccomp profile: {0}")]
    Build(#[from] oci_spec::OciSpecError),
    #[error("cannot read the host's kernel release from {0}: {1}")]
    Release(&'static str, std::io::Error),
    #[error("cannot tell the host's kernel version from {0:?}")]
    KernelRelease(String),
    #[error("the service's seccomp mode {0} is unknown")]
    Mode(i32),
}

type Result<T, E = ProfileError> = std::result::Result<T, E>;

/// A kernel version as profiles compare them: "kernel.major" ("4.8").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u64, pub u64);

impl KernelVersion {
    /// The leading "A.B" of a release such as "6.1.0-18-amd64" or "3.12-rc5".
    pub fn from_release(release: &str) -> Result<KernelVersion> {
        let bad = || ProfileError::KernelRelease(release.to_string());
        let mut parts = release.splitn(3, '.');
        let kernel = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let major: String = parts
            .next()
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Ok(KernelVersion(kernel, major.parse().map_err(|_| bad())?))
    }

    /// A profile's `minKernel`: exactly "A.B", each below 256, not "0.0".
    fn from_profile(text: &str) -> Result<KernelVersion> {
        let bad = || ProfileError::MinKernel(text.to_string());
        let (a, b) = text.split_once('.').ok_or_else(bad)?;
        let a: u8 = a.parse().map_err(|_| bad())?;
        let b: u8 = b.parse().map_err(|_| bad())?;
        if a == 0 && b == 0 {
            return Err(bad());
        }
        Ok(KernelVersion(a.into(), b.into()))
    }
}

const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// What a profile's conditions are checked against besides capabilities.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// libseccomp's name of the native architecture ("amd64", "arm64").
    pub arch: &'static str,
    /// Its seccomp architecture, to find the `archMap` entry.
    pub seccomp_arch: Option<Arch>,
    pub kernel: KernelVersion,
}

impl Host {
    /// This machine.
    pub fn current() -> Result<Host> {
        let release =
            std::fs::read_to_string(OSRELEASE).map_err(|e| ProfileError::Release(OSRELEASE, e))?;
        let (arch, seccomp_arch) = native_arch();
        Ok(Host {
            arch,
            seccomp_arch,
            kernel: KernelVersion::from_release(release.trim())?,
        })
    }
}

/// moby's goToNative and nativeToSeccomp for the architectures Rust builds
/// the agent for.
fn native_arch() -> (&'static str, Option<Arch>) {
    if cfg!(target_arch = "x86_64") {
        ("amd64", Some(Arch::ScmpArchX86_64))
    } else if cfg!(target_arch = "aarch64") {
        ("arm64", Some(Arch::ScmpArchAarch64))
    } else if cfg!(target_arch = "riscv64") {
        ("riscv64", Some(Arch::ScmpArchRiscv64))
    } else if cfg!(target_arch = "s390x") {
        ("s390x", Some(Arch::ScmpArchS390x))
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        ("ppc64le", Some(Arch::ScmpArchPpc64le))
    } else if cfg!(target_arch = "x86") {
        ("x86", Some(Arch::ScmpArchX86))
    } else if cfg!(target_arch = "arm") {
        ("arm", Some(Arch::ScmpArchArm))
    } else {
        ("unknown", None)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Option<Vec<String>>,
    /// The older one-name form.
    name: Option<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
    includes: Option<Filter>,
    excludes: Option<Filter>,
}

/// A parsed profile, checked as Docker checks it when it loads one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: Option<LinuxSeccompAction>,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<Arch>>,
    arch_map: Option<Vec<ArchMapEntry>>,
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    syscalls: Option<Vec<Rule>>,
}

/// A list that is there and not empty (Docker's `len(x) != 0`).
fn given<T>(list: &Option<Vec<T>>) -> bool {
    list.as_ref().is_some_and(|l| !l.is_empty())
}

impl Profile {
    pub fn parse(json: &str) -> Result<Profile> {
        let profile: Profile = serde_json::from_str(json)?;
        if given(&profile.architectures) && given(&profile.arch_map) {
            return Err(ProfileError::BothArchitectures);
        }
        if profile.default_action.is_none() && !profile.rules().is_empty() {
            // Docker passes the empty action on and runc refuses it at start.
            return Err(ProfileError::NoDefaultAction);
        }
        for (index, rule) in profile.rules().iter().enumerate() {
            if rule.name.as_ref().is_some_and(|n| !n.is_empty()) && given(&rule.names) {
                return Err(ProfileError::BothNames { index });
            }
            for filter in [&rule.includes, &rule.excludes].into_iter().flatten() {
                if let Some(v) = filter.min_kernel.as_deref().filter(|v| !v.is_empty()) {
                    KernelVersion::from_profile(v)?;
                }
            }
        }
        Ok(profile)
    }

    fn rules(&self) -> &[Rule] {
        self.syscalls.as_deref().unwrap_or_default()
    }

    /// The OCI profile for a task with capability set `caps` ("CAP_*") on
    /// `host`; `None` when the profile leaves seccomp off (no default action
    /// and no rules, as Docker reads it).
    pub fn for_task(&self, caps: &[&str], host: &Host) -> Result<Option<LinuxSeccomp>> {
        // parse() refused rules without a default action.
        let Some(default_action) = self.default_action else {
            return Ok(None);
        };
        let mut architectures = self.architectures.clone().unwrap_or_default();
        let native = self
            .arch_map
            .iter()
            .flatten()
            .find(|m| Some(m.architecture) == host.seccomp_arch);
        if let Some(m) = native {
            architectures.push(m.architecture);
            architectures.extend(m.sub_architectures.iter().flatten());
        }
        let mut syscalls = Vec::new();
        for rule in self.rules() {
            if rule.applies(caps, host) {
                syscalls.push(rule.to_oci()?);
            }
        }
        let mut out = LinuxSeccompBuilder::default()
            .default_action(default_action)
            .syscalls(syscalls);
        if let Some(errno) = self.default_errno_ret {
            out = out.default_errno_ret(errno);
        }
        if !architectures.is_empty() {
            out = out.architectures(architectures);
        }
        if let Some(flags) = self.flags.clone().filter(|f| !f.is_empty()) {
            out = out.flags(flags);
        }
        Ok(Some(out.build()?))
    }
}

impl Rule {
    /// moby's filter: every `excludes` condition that matches drops the rule,
    /// every `includes` condition must match to keep it.
    fn applies(&self, caps: &[&str], host: &Host) -> bool {
        // Checked at parse; an unparsable one cannot get here.
        let min_kernel = |f: &Filter| {
            f.min_kernel
                .as_deref()
                .filter(|v| !v.is_empty())
                .and_then(|v| KernelVersion::from_profile(v).ok())
        };
        if let Some(ex) = &self.excludes
            && (ex.arches.iter().flatten().any(|a| a == host.arch)
                || ex.caps.iter().flatten().any(|c| caps.contains(&c.as_str()))
                || min_kernel(ex).is_some_and(|v| host.kernel >= v))
        {
            return false;
        }
        if let Some(inc) = &self.includes {
            let arches = inc.arches.as_deref().unwrap_or_default();
            if !arches.is_empty() && !arches.iter().any(|a| a == host.arch) {
                return false;
            }
            if !inc
                .caps
                .iter()
                .flatten()
                .all(|c| caps.contains(&c.as_str()))
            {
                return false;
            }
            if min_kernel(inc).is_some_and(|v| host.kernel < v) {
                return false;
            }
        }
        true
    }

    fn to_oci(&self) -> Result<LinuxSyscall> {
        let names = match self.name.as_ref().filter(|n| !n.is_empty()) {
            Some(name) => vec![name.clone()],
            None => self.names.clone().unwrap_or_default(),
        };
        let mut out = LinuxSyscallBuilder::default()
            .names(names)
            .action(self.action);
        if let Some(errno) = self.errno_ret {
            out = out.errno_ret(errno);
        }
        if let Some(args) = self.args.clone().filter(|a| !a.is_empty()) {
            out = out.args(args);
        }
        Ok(out.build()?)
    }
}

fn docker_default() -> &'static Profile {
    static PROFILE: OnceLock<Profile> = OnceLock::new();
    PROFILE.get_or_init(|| {
        // The file is part of the binary and its parse is unit-tested.
        Profile::parse(DOCKER_DEFAULT_JSON).expect("the embedded Docker profile parses")
    })
}

/// The seccomp profile of a task whose service chose `choice`, for capability
/// set `caps`: Docker's default unless the service opted out or brought its own.
pub fn for_service(choice: Option<&Seccomp>, caps: &[&str]) -> Result<Option<LinuxSeccomp>> {
    let (mode, json) = choice.map_or((0, ""), |s| (s.mode, s.profile_json.as_str()));
    match Mode::try_from(mode) {
        Ok(Mode::Default) => docker_default().for_task(caps, &Host::current()?),
        Ok(Mode::Unconfined) => Ok(None),
        Ok(Mode::Custom) => Profile::parse(json)?.for_task(caps, &Host::current()?),
        Err(_) => Err(ProfileError::Mode(mode)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompOperator;

    const AMD64_6_1: Host = Host {
        arch: "amd64",
        seccomp_arch: Some(Arch::ScmpArchX86_64),
        kernel: KernelVersion(6, 1),
    };

    fn docker_caps(extra: &[&str]) -> Vec<&'static str> {
        let add: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        berth_proto::capabilities::effective(&add, &[]).expect("caps")
    }

    /// The rules that name `syscall`.
    fn rules_for<'a>(profile: &'a LinuxSeccomp, syscall: &str) -> Vec<&'a LinuxSyscall> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == syscall))
            .collect()
    }

    fn docker(extra_caps: &[&str], host: &Host) -> LinuxSeccomp {
        docker_default()
            .for_task(&docker_caps(extra_caps), host)
            .expect("convert")
            .expect("a profile")
    }

    #[test]
    fn the_default_profile_denies_with_eperm_and_maps_the_host_arch() {
        let p = docker(&[], &AMD64_6_1);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        for blocked in ["unshare", "keyctl", "add_key", "mount", "setns", "bpf"] {
            assert!(
                rules_for(&p, blocked).is_empty(),
                "{blocked} is allowed without CAP_SYS_ADMIN"
            );
        }
        for allowed in ["read", "execve", "arch_prctl", "modify_ldt", "chroot"] {
            assert!(!rules_for(&p, allowed).is_empty(), "{allowed}");
        }
        // Other architectures' rules are left out.
        assert!(rules_for(&p, "s390_runtime_instr").is_empty());
        assert!(rules_for(&p, "breakpoint").is_empty());
    }

    #[test]
    fn without_sys_admin_clone_is_masked_and_clone3_says_enosys() {
        let p = docker(&[], &AMD64_6_1);
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        let arg = clone[0].args().as_ref().expect("args")[0];
        assert_eq!(arg.index(), 0);
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 2114060288);
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1, "{clone3:?}");
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
    }

    #[test]
    fn sys_admin_brings_the_namespace_and_mount_calls() {
        let p = docker(&["SYS_ADMIN"], &AMD64_6_1);
        for call in ["unshare", "setns", "mount", "umount2", "clone3"] {
            let rules = rules_for(&p, call);
            assert!(
                rules
                    .iter()
                    .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none()),
                "{call}: {rules:?}"
            );
        }
        // The masked clone and clone3's ENOSYS are excluded by the capability.
        assert!(rules_for(&p, "clone").iter().all(|r| r.args().is_none()));
        assert!(
            rules_for(&p, "clone3")
                .iter()
                .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
        );
        // Still not granted by SYS_ADMIN alone.
        assert!(rules_for(&p, "reboot").is_empty());
        assert!(!rules_for(&docker(&["SYS_BOOT"], &AMD64_6_1), "reboot").is_empty());
    }

    #[test]
    fn min_kernel_and_arch_conditions() {
        let old = Host {
            kernel: KernelVersion(4, 4),
            ..AMD64_6_1
        };
        assert!(rules_for(&docker(&[], &old), "ptrace").is_empty());
        assert!(!rules_for(&docker(&[], &AMD64_6_1), "ptrace").is_empty());
        assert!(!rules_for(&docker(&["SYS_PTRACE"], &old), "ptrace").is_empty());
        let arm = Host {
            arch: "arm64",
            seccomp_arch: Some(Arch::ScmpArchAarch64),
            ..AMD64_6_1
        };
        let p = docker(&[], &arm);
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert!(rules_for(&p, "arch_prctl").is_empty());
        assert!(!rules_for(&p, "breakpoint").is_empty());
    }

    #[test]
    fn kernel_releases_parse_as_docker_reads_them() {
        let v = |r| KernelVersion::from_release(r).unwrap();
        assert_eq!(v("6.1.0-18-amd64"), KernelVersion(6, 1));
        assert_eq!(v("3.12-1-amd64"), KernelVersion(3, 12));
        assert_eq!(v("4.8-rc5"), KernelVersion(4, 8));
        assert!(KernelVersion::from_release("linux").is_err());
        assert!(KernelVersion(4, 10) > KernelVersion(4, 8));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let err = |json: &str| Profile::parse(json).unwrap_err().to_string();
        assert!(err("{").contains("not valid JSON"));
        assert!(err(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).contains("SCMP_ACT_NOPE"));
        assert!(
            err(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#)
                .contains("no 'defaultAction'")
        );
        assert!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                 "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
            )
            .contains("both 'architectures' and 'archMap'")
        );
        assert!(
            err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#)
            .contains("minKernel \"4\"")
        );
        assert!(
            err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#)
            .contains("rule 0 gives both")
        );
    }

    #[test]
    fn a_custom_profile_and_unconfined() {
        let custom = Seccomp {
            mode: Mode::Custom as i32,
            profile_json: r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#
                .into(),
        };
        let p = for_service(Some(&custom), &docker_caps(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(rules_for(&p, "mkdir")[0].errno_ret(), Some(13));
        let off = Seccomp {
            mode: Mode::Unconfined as i32,
            profile_json: String::new(),
        };
        assert!(for_service(Some(&off), &[]).unwrap().is_none());
        assert!(for_service(None, &docker_caps(&[])).unwrap().is_some());
        // An empty profile leaves seccomp off, as in Docker.
        assert!(
            Profile::parse("{}")
                .unwrap()
                .for_task(&[], &AMD64_6_1)
                .unwrap()
                .is_none()
        );
    }
}
