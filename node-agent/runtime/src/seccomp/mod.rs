//! seccomp: the spec's profile compiled to BPF with seccompiler. A profile with
//! several actions becomes several filters (one per action, plus one for the
//! default action); the kernel runs them all and the most restrictive result
//! wins, which gives each listed syscall its own action.

/// Syscall names to numbers for this architecture (generated from libc).
mod table;

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall};
/// A compiled filter, as [`compile`] makes and [`install`] takes them.
pub use seccompiler::BpfProgram;
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp action {0:?} is not supported")]
    Action(LinuxSeccompAction),
    #[error("seccomp rule for {name}: {source}")]
    Rule {
        name: String,
        source: seccompiler::BackendError,
    },
    #[error("seccomp filter: {0}")]
    Filter(seccompiler::BackendError),
    #[error(
        "the profile restricts seccomp(2) itself in {0} of its filters (one per action); \
         berth-runtime installs them one by one, so at most one may"
    )]
    SelfRestricting(usize),
    #[error("this architecture has no seccomp support in berth-runtime")]
    Arch,
    #[error("failed to install the seccomp filter: {0}")]
    Install(std::io::Error),
}

type Result<T> = std::result::Result<T, SeccompError>;

const EPERM: u32 = 1;

fn arch() -> Result<TargetArch> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(SeccompError::Arch)
    }
}

fn syscall_number(name: &str) -> Option<i64> {
    table::TABLE
        .iter()
        .find_map(|(n, nr)| (*n == name).then_some(*nr))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(EPERM)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(0)),
        other => return Err(SeccompError::Action(other)),
    })
}

/// The conditions of one spec entry (ANDed), or None for "any arguments".
fn rule(entry: &LinuxSyscall, name: &str) -> Result<Option<SeccompRule>> {
    let Some(args) = entry.args().as_ref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let mut conditions = Vec::new();
    for arg in args {
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
            // value is the mask, valueTwo the expected result.
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        let err = |source| SeccompError::Rule {
            name: name.to_string(),
            source,
        };
        let index = u8::try_from(arg.index()).unwrap_or(u8::MAX);
        conditions
            .push(SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(err)?);
    }
    SeccompRule::new(conditions)
        .map(Some)
        .map_err(|source| SeccompError::Rule {
            name: name.to_string(),
            source,
        })
}

/// Rules per syscall number; an empty list matches on the number alone.
type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Adds a conditional rule; unconditional ones are kept apart and win at build.
fn add(rules: &mut Rules, nr: i64, rule: Option<SeccompRule>) {
    if let Some(r) = rule {
        rules.entry(nr).or_default().push(r);
    }
}

/// Compiles the profile; syscall names this architecture lacks are skipped.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>> {
    let arch = arch()?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut listed = Rules::new();
    let mut unconditional_listed = BTreeSet::new();
    let mut by_action: Vec<(SeccompAction, Rules, BTreeSet<i64>)> = Vec::new();
    for entry in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(entry.action(), entry.errno_ret())?;
        if act == default {
            continue;
        }
        for name in entry.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let r = rule(entry, name)?;
            if r.is_none() {
                unconditional_listed.insert(nr);
            }
            add(&mut listed, nr, r.clone());
            if act == SeccompAction::Allow {
                continue;
            }
            let slot = match by_action.iter().position(|(a, _, _)| *a == act) {
                Some(i) => i,
                None => {
                    by_action.push((act.clone(), Rules::new(), Default::default()));
                    by_action.len() - 1
                }
            };
            let (_, rules, unconditional) = &mut by_action[slot];
            if r.is_none() {
                unconditional.insert(nr);
            }
            add(rules, nr, r);
        }
    }
    // Each filter is installed with seccomp(2), which the filters installed
    // before it also judge: one that may refuse seccomp itself goes last.
    let seccomp_nr = syscall_number("seccomp");
    let mut programs: Vec<(bool, BpfProgram)> = Vec::new();
    let build = |mut rules: Rules, unconditional: &BTreeSet<i64>, mismatch, matched| {
        for nr in unconditional {
            rules.insert(*nr, Vec::new());
        }
        let filter =
            SeccompFilter::new(rules, mismatch, matched, arch).map_err(SeccompError::Filter)?;
        BpfProgram::try_from(filter).map_err(SeccompError::Filter)
    };
    if default != SeccompAction::Allow {
        let restricts = seccomp_nr.is_some_and(|nr| !unconditional_listed.contains(&nr));
        programs.push((
            restricts,
            build(
                listed,
                &unconditional_listed,
                default.clone(),
                SeccompAction::Allow,
            )?,
        ));
    }
    for (act, rules, unconditional) in by_action {
        let restricts =
            seccomp_nr.is_some_and(|nr| rules.contains_key(&nr) || unconditional.contains(&nr));
        programs.push((
            restricts,
            build(rules, &unconditional, SeccompAction::Allow, act)?,
        ));
    }
    let restricting = programs.iter().filter(|(r, _)| *r).count();
    if restricting > 1 {
        return Err(SeccompError::SelfRestricting(restricting));
    }
    programs.sort_by_key(|(restricts, _)| *restricts);
    Ok(programs.into_iter().map(|(_, p)| p).collect())
}

/// Installs the filters on the calling thread (needs no_new_privs or
/// CAP_SYS_ADMIN; seccompiler's helper would force no_new_privs, so call the
/// syscall directly).
pub fn install(programs: &[BpfProgram]) -> Result<()> {
    for program in programs {
        #[repr(C)]
        struct SockFprog {
            len: libc::c_ushort,
            filter: *const seccompiler::sock_filter,
        }
        let prog = SockFprog {
            len: program.len() as libc::c_ushort,
            filter: program.as_ptr(),
        };
        // SAFETY: the kernel copies the program; `prog` outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const SockFprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Install(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_testhost::forked::{exit_code_in_child, outcome, set_no_new_privs};
    use oci_spec::runtime::{
        LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder,
    };

    use super::*;

    /// One rule of a profile.
    fn entry(
        names: &[&str],
        action: LinuxSeccompAction,
        errno: Option<u32>,
        args: Vec<LinuxSeccompArg>,
    ) -> LinuxSyscall {
        let mut b = LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(action);
        if let Some(e) = errno {
            b = b.errno_ret(e);
        }
        if !args.is_empty() {
            b = b.args(args);
        }
        b.build().expect("rule")
    }

    fn allow(names: &[&str]) -> LinuxSyscall {
        entry(names, LinuxSeccompAction::ScmpActAllow, None, Vec::new())
    }

    /// Argument 0 compared with `op`.
    fn arg0(op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(value)
            .op(op)
            .build()
            .expect("arg")
    }

    fn profile(default: LinuxSeccompAction, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(default)
            .syscalls(rules)
            .build()
            .expect("profile")
    }

    /// `probe` in a forked child under `programs` (no_new_privs first, as the
    /// runtime does for a task): its exit code.
    fn under(programs: &[BpfProgram], probe: fn() -> i32) -> i32 {
        exit_code_in_child(|| match set_no_new_privs() && install(programs).is_ok() {
            true => probe(),
            false => 202,
        })
    }

    #[test]
    fn names_resolve() {
        assert_eq!(syscall_number("read"), Some(libc::SYS_read));
        assert_eq!(syscall_number("mkdirat"), Some(libc::SYS_mkdirat));
        assert_eq!(syscall_number("no_such_call"), None);
    }

    #[test]
    fn one_filter_per_action_plus_default() {
        let profile = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                allow(&["read", "write", "not_a_syscall"]),
                entry(
                    &["personality"],
                    LinuxSeccompAction::ScmpActAllow,
                    None,
                    vec![arg0(LinuxSeccompOperator::ScmpCmpEq, 0)],
                ),
                entry(
                    &["mkdir"],
                    LinuxSeccompAction::ScmpActKillProcess,
                    None,
                    Vec::new(),
                ),
            ],
        );
        let programs = compile(&profile).expect("compile");
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn notify_is_refused() {
        let profile = profile(LinuxSeccompAction::ScmpActNotify, Vec::new());
        assert!(matches!(compile(&profile), Err(SeccompError::Action(_))));
    }

    #[test]
    fn errno_returns_and_masked_arguments_reach_the_caller() {
        // Deny with EPERM by default, as Docker's profile does.
        let mut profile = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                allow(&["exit", "exit_group", "getpid"]),
                // personality only with none of the bits of 0xff00 set.
                entry(
                    &["personality"],
                    LinuxSeccompAction::ScmpActAllow,
                    None,
                    vec![arg0(LinuxSeccompOperator::ScmpCmpMaskedEq, 0xff00)],
                ),
                // As Docker answers clone3: ENOSYS, so libcs fall back.
                entry(
                    &["getppid"],
                    LinuxSeccompAction::ScmpActErrno,
                    Some(libc::ENOSYS as u32),
                    Vec::new(),
                ),
            ],
        );
        profile.set_default_errno_ret(Some(1));
        let programs = compile(&profile).expect("compile");
        // SAFETY (all probes): raw syscalls with integer arguments.
        assert_eq!(under(&programs, || 0), 0, "the filter installs");
        assert_eq!(
            under(&programs, || outcome(unsafe {
                libc::syscall(libc::SYS_getpid)
            })),
            0
        );
        assert_eq!(
            under(&programs, || outcome(unsafe {
                libc::syscall(libc::SYS_getppid)
            })),
            libc::ENOSYS
        );
        assert_eq!(
            under(&programs, || outcome(unsafe {
                libc::syscall(libc::SYS_gettid)
            })),
            libc::EPERM
        );
        assert_eq!(
            under(&programs, || outcome(unsafe {
                libc::syscall(libc::SYS_personality, 0u64)
            })),
            0
        );
        assert_eq!(
            under(&programs, || outcome(unsafe {
                libc::syscall(libc::SYS_personality, 0xffff_ffffu64)
            })),
            libc::EPERM
        );
    }

    #[test]
    fn a_filter_that_refuses_seccomp_goes_last_and_two_are_refused() {
        let on_seccomp = |action, value| {
            entry(
                &["seccomp"],
                action,
                None,
                vec![arg0(LinuxSeccompOperator::ScmpCmpEq, value)],
            )
        };
        let two = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![
                on_seccomp(LinuxSeccompAction::ScmpActErrno, 0),
                on_seccomp(LinuxSeccompAction::ScmpActKillProcess, 2),
            ],
        );
        assert!(matches!(
            compile(&two),
            Err(SeccompError::SelfRestricting(2))
        ));
        // Denying by default (seccomp unlisted) and one more action: the
        // default filter goes last, so both install.
        let one = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                allow(&["exit_group"]),
                entry(
                    &["getppid"],
                    LinuxSeccompAction::ScmpActKillProcess,
                    None,
                    Vec::new(),
                ),
            ],
        );
        let programs = compile(&one).expect("compile");
        assert_eq!(programs.len(), 2);
        assert_eq!(under(&programs, || 0), 0, "both filters install");
        // SAFETY: a raw syscall without arguments.
        assert_eq!(
            under(&programs, || outcome(unsafe {
                libc::syscall(libc::SYS_getppid)
            })),
            128 + libc::SIGSYS
        );
    }
}
