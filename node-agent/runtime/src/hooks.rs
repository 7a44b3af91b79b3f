//! The spec's POSIX-platform hooks (config.md "POSIX-platform Hooks",
//! runtime.md "Lifecycle"): programs run at points of a container's life,
//! each given the container's state JSON on stdin, its own args and env, and
//! an optional timeout after which it is killed.
//!
//! Who runs which: `prestart` and `createRuntime` the runtime (create, in the
//! host's namespaces, once init has made the namespaces and mounts and before
//! pivot_root); `createContainer` init (in the container's mount namespace,
//! before pivot_root); `startContainer` init (after `start`, in the
//! container, just before the user's process); `poststart` the `start`
//! command once that process runs; `poststop` the `delete` command once the
//! container is gone. A failure of the first four fails the operation (the
//! container is destroyed); one of the last two is a warning.

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use oci_spec::runtime::{Hook, Spec};

/// How much of a failed hook's output its error keeps (the end of it).
const OUTPUT_KEPT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook #{index} ({}): cannot be started: {source}", path.display())]
    Spawn {
        kind: Kind,
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} hook #{index} ({}) failed: {status}{}", path.display(), output_suffix(output))]
    Failed {
        kind: Kind,
        index: usize,
        path: PathBuf,
        status: String,
        output: String,
    },
    #[error("{kind} hook #{index} ({}) timed out after {seconds}s and was killed{}", path.display(), output_suffix(output))]
    TimedOut {
        kind: Kind,
        index: usize,
        path: PathBuf,
        seconds: i64,
        output: String,
    },
    #[error("{kind} hook #{index} ({}): {what}: {source}", path.display())]
    Io {
        kind: Kind,
        index: usize,
        path: PathBuf,
        what: &'static str,
        source: nix::Error,
    },
}

fn output_suffix(output: &str) -> String {
    let output = output.trim();
    if output.is_empty() {
        String::new()
    } else {
        format!("; output: {output}")
    }
}

/// The six kinds of hooks, in the order of a container's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        })
    }
}

const ALL: [Kind; 6] = [
    Kind::Prestart,
    Kind::CreateRuntime,
    Kind::CreateContainer,
    Kind::StartContainer,
    Kind::Poststart,
    Kind::Poststop,
];

/// The spec's hooks of `kind` (none when it has none).
pub fn of(spec: &Spec, kind: Kind) -> &[Hook] {
    let Some(hooks) = spec.hooks().as_ref() else {
        return &[];
    };
    let list = match kind {
        Kind::Prestart => hooks.prestart(),
        Kind::CreateRuntime => hooks.create_runtime(),
        Kind::CreateContainer => hooks.create_container(),
        Kind::StartContainer => hooks.start_container(),
        Kind::Poststart => hooks.poststart(),
        Kind::Poststop => hooks.poststop(),
    };
    list.as_deref().unwrap_or_default()
}

/// True when init has hooks to wait for or to run itself during create or
/// start (it then stops before pivot_root for the runtime's hooks and gets
/// the state to give its own).
pub fn init_takes_part(spec: &Spec) -> bool {
    [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
    ]
    .iter()
    .any(|k| !of(spec, *k).is_empty())
}

/// The spec's rules for a hook: an absolute path and a positive timeout.
/// Returns what is wrong with the first hook that breaks one.
pub fn check(spec: &Spec) -> Result<(), String> {
    for kind in ALL {
        for (index, hook) in of(spec, kind).iter().enumerate() {
            if !hook.path().is_absolute() {
                return Err(format!(
                    "hooks.{kind}[{index}].path {} is not absolute",
                    hook.path().display()
                ));
            }
            if let Some(t) = hook.timeout()
                && t <= 0
            {
                return Err(format!(
                    "hooks.{kind}[{index}].timeout is {t}: it must be greater than zero"
                ));
            }
        }
    }
    Ok(())
}

/// Where a hook without an `env` of its own gets its environment: the
/// runtime's (hooks in the runtime namespace, as runc) or the container
/// process's (hooks in the container, as runc).
#[derive(Clone, Copy, Debug)]
pub enum DefaultEnv<'a> {
    Inherit,
    Process(&'a [String]),
}

/// Runs `hooks` in order; the first that fails stops the rest and is the error.
pub fn run(kind: Kind, hooks: &[Hook], state: &[u8], env: DefaultEnv) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_one(kind, index, hook, state, env)?;
    }
    Ok(())
}

/// Runs every hook of `hooks`; a failure is printed as a warning naming the
/// container `id`, and the next hook runs as if it had succeeded.
pub fn run_warning(id: &str, kind: Kind, hooks: &[Hook], state: &[u8]) {
    for (index, hook) in hooks.iter().enumerate() {
        if let Err(e) = run_one(kind, index, hook, state, DefaultEnv::Inherit) {
            eprintln!("berth-runtime: container {id}: warning: {e}");
        }
    }
}

fn run_one(
    kind: Kind,
    index: usize,
    hook: &Hook,
    state: &[u8],
    env: DefaultEnv,
) -> Result<(), HookError> {
    let path = hook.path().clone();
    let io = |what| {
        let path = path.clone();
        move |source| HookError::Io {
            kind,
            index,
            path,
            what,
            source,
        }
    };
    let mut command = Command::new(&path);
    if let Some((arg0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        command.arg0(arg0).args(rest);
    }
    let env = match (hook.env(), env) {
        (Some(own), _) => Some(own.as_slice()),
        (None, DefaultEnv::Process(process)) => Some(process),
        (None, DefaultEnv::Inherit) => None,
    };
    if let Some(env) = env {
        command.env_clear();
        for entry in env {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            command.env(key, value);
        }
    }
    // stdout and stderr share one pipe: what the hook says goes into the
    // error if it fails.
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io("make a pipe"))?;
    let out_w2 = out_w.try_clone().map_err(|e| HookError::Spawn {
        kind,
        index,
        path: path.clone(),
        source: e,
    })?;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    let mut child = command.spawn().map_err(|source| HookError::Spawn {
        kind,
        index,
        path: path.clone(),
        source,
    })?;
    // Our copies of the write ends went into the Command, which dropped them
    // after the spawn: EOF on out_r means the hook (and anything it left
    // running with its stdout) is done writing.
    drop(command);
    let stdin: OwnedFd = child
        .stdin
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| HookError::Io {
            kind,
            index,
            path: path.clone(),
            what: "open its stdin",
            source: nix::Error::EBADF,
        })?;
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let pid = child.id() as i32;
    // SAFETY: pidfd_open with integer arguments; the fd is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io("open a pidfd")(nix::Error::last()));
    }
    // SAFETY: a fresh fd nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let outcome = pump(stdin, state, &out_r, &pidfd, deadline);
    let mut output = outcome.output;
    if outcome.timed_out {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::TimedOut {
            kind,
            index,
            path,
            seconds: hook.timeout().unwrap_or(0),
            output: tail(&output),
        });
    }
    let status = child.wait().map_err(|source| HookError::Spawn {
        kind,
        index,
        path: path.clone(),
        source,
    })?;
    // What is left in the pipe (non-blocking: a daemon the hook started may
    // hold it open).
    let _ = fcntl(&out_r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut file = std::fs::File::from(out_r);
    let mut rest = Vec::new();
    let _ = file.read_to_end(&mut rest);
    output.extend_from_slice(&rest);
    if status.success() {
        return Ok(());
    }
    Err(HookError::Failed {
        kind,
        index,
        path,
        status: status.to_string(),
        output: tail(&output),
    })
}

struct Pumped {
    output: Vec<u8>,
    timed_out: bool,
}

/// Writes `state` into the hook's stdin and reads its output until it exits
/// or the deadline passes, whichever is first.
fn pump(
    stdin: OwnedFd,
    state: &[u8],
    out: &OwnedFd,
    pidfd: &OwnedFd,
    deadline: Option<Instant>,
) -> Pumped {
    let _ = fcntl(&stdin, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut written = 0;
    // Closed once the whole state is written, so a hook reading to EOF ends.
    let mut stdin = (!state.is_empty()).then_some(stdin);
    let mut out_open = true;
    let mut output = Vec::new();
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Pumped {
                        output,
                        timed_out: true,
                    };
                }
                PollTimeout::from(left.as_millis().min(30_000) as u16)
            }
        };
        let want_stdin = stdin.is_some();
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if out_open {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = &stdin {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) | Ok(0) => continue,
            Err(_) => break,
            Ok(_) => {}
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let exited = ready(&fds[0]);
        let out_ready = out_open && ready(&fds[1]);
        let stdin_ready = want_stdin && ready(&fds[fds.len() - 1]);
        if out_ready {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(out, &mut buf) {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    output.extend_from_slice(&buf[..n]);
                    // Keep the tail only.
                    if output.len() > 4 * OUTPUT_KEPT {
                        output.drain(..output.len() - OUTPUT_KEPT);
                    }
                }
            }
        }
        if stdin_ready && let Some(fd) = &stdin {
            match nix::unistd::write(fd, &state[written..]) {
                Ok(n) => written += n,
                Err(nix::Error::EAGAIN) => {}
                // EPIPE: the hook does not read its stdin (or is gone); that
                // is its business.
                Err(_) => written = state.len(),
            }
            if written >= state.len() {
                stdin = None;
            }
        }
        if exited {
            break;
        }
    }
    Pumped {
        output,
        timed_out: false,
    }
}

fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(OUTPUT_KEPT);
    String::from_utf8_lossy(&output[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{HookBuilder, HooksBuilder};

    fn hook(path: &str, args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path(path)
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().expect("hook")
    }

    fn spec_with(hooks: oci_spec::runtime::Hooks) -> Spec {
        let mut spec = Spec::default();
        spec.set_hooks(Some(hooks));
        spec
    }

    #[test]
    fn a_relative_path_and_a_zero_timeout_are_refused() {
        let spec = spec_with(
            HooksBuilder::default()
                .create_runtime(vec![hook("bin/true", &[], None)])
                .build()
                .expect("hooks"),
        );
        assert_eq!(
            check(&spec).unwrap_err(),
            "hooks.createRuntime[0].path bin/true is not absolute"
        );
        let spec = spec_with(
            HooksBuilder::default()
                .poststop(vec![
                    hook("/bin/true", &[], Some(1)),
                    hook("/bin/true", &[], Some(0)),
                ])
                .build()
                .expect("hooks"),
        );
        assert_eq!(
            check(&spec).unwrap_err(),
            "hooks.poststop[1].timeout is 0: it must be greater than zero"
        );
        let spec = spec_with(
            HooksBuilder::default()
                .prestart(vec![hook("/bin/true", &[], Some(3))])
                .build()
                .expect("hooks"),
        );
        assert!(check(&spec).is_ok());
        assert!(init_takes_part(&spec));
        assert!(!init_takes_part(&Spec::default()));
    }

    #[test]
    fn a_hook_reads_the_state_and_gets_its_args_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = format!("cat > {0}; echo \" $0 $1 $A\" >> {0}", out.display());
        let mut h = hook(
            "/bin/sh",
            &["hook-name", "-c", &script, "zero", "one"],
            Some(5),
        );
        h.set_env(Some(vec!["A=b".into()]));
        run(
            Kind::CreateRuntime,
            &[h],
            br#"{"id":"c1"}"#,
            DefaultEnv::Inherit,
        )
        .expect("hook");
        let text = std::fs::read_to_string(&out).expect("output");
        assert_eq!(text, "{\"id\":\"c1\"} zero one b\n");
    }

    #[test]
    fn a_failing_hook_is_named_with_its_output() {
        let h = hook("/bin/sh", &["sh", "-c", "echo broken >&2; exit 3"], None);
        let err = run(Kind::Prestart, &[h], b"{}", DefaultEnv::Inherit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prestart hook #0 (/bin/sh) failed: exit status: 3; output: broken"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let h = hook(
            "/bin/sh",
            &["sh", "-c", "echo waiting; exec sleep 30"],
            Some(1),
        );
        let err = run(Kind::CreateContainer, &[h], b"{}", DefaultEnv::Inherit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "createContainer hook #0 (/bin/sh) timed out after 1s and was killed; output: waiting"
        );
    }

    #[test]
    fn a_hook_that_does_not_read_stdin_is_fine() {
        let h = hook("/bin/true", &[], None);
        let big = vec![b'x'; 300_000];
        run(Kind::Poststart, &[h], &big, DefaultEnv::Inherit).expect("hook");
    }
}
