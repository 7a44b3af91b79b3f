//! berth-init: the container's PID 1 when a service runs without `--init`
//! (the `run.berth.init=true` annotation). It is a few KB of raw Linux
//! syscalls, with no libc and no allocator, so the process a running
//! container keeps for it costs a few pages instead of a fork of the whole
//! runtime (docs/design/runtime.md, "Minimal init").
//!
//! Invoked as `berth-init -- PROGRAM ARGV...` (ARGV includes ARGV[0]) with
//! the container's environment: it blocks every signal, forks, and the child
//! restores the signal mask and execs PROGRAM with ARGV and the environment.
//! The parent waits for signals: it forwards every one but SIGCHLD to the
//! child, reaps every zombie on SIGCHLD, and exits as the child did (its exit
//! code, or 128 + the signal that killed it), as `src/init.rs` does.
//!
//! build.rs compiles this file on its own (not a module of the crate):
//! `#![no_std]`, `#![no_main]`, `_start` below, linked static with
//! `-nostdlib -nostartfiles`. berth-runtime execs it from a sealed memfd
//! (`src/init_image.rs`). Supported: x86_64 and aarch64 Linux.

#![no_std]
#![no_main]
// No libc to call: keep LLVM from turning loops into strlen or memset calls.
#![no_builtins]

use core::arch::{asm, global_asm};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const WRITEV: usize = 20;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const CLONE: usize = 56;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const PRCTL: usize = 157;
    pub const EXIT_GROUP: usize = 231;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const WRITEV: usize = 66;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const CLONE: usize = 220;
    pub const EXECVE: usize = 221;
    pub const WAIT4: usize = 260;
    pub const KILL: usize = 129;
    pub const PRCTL: usize = 167;
    pub const EXIT_GROUP: usize = 94;
}

// The entry point: the kernel leaves argc, argv[], NULL, envp[], NULL on the
// stack. Hand its address to `start` with an aligned stack and no frame.
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    ".type _start,%function",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "bl {start}",
    "brk #0",
    start = sym start,
);

/// A raw syscall with up to five arguments; returns the kernel's value
/// (negative errno on failure).
#[cfg(target_arch = "x86_64")]
unsafe fn syscall(n: usize, a: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall(n: usize, a: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`.
    unsafe {
        asm!(
            "svc #0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            options(nostack),
        );
    }
    ret
}

const SIGCHLD: usize = 17;
const SIG_SETMASK: usize = 2;
const WNOHANG: usize = 1;
const PR_SET_NAME: usize = 15;
const PR_SET_DUMPABLE: usize = 4;
/// The kernel's sigset_t: one bit per signal 1..=64.
const SIGSET_SIZE: usize = 8;
const EACCES: isize = 13;
const ENOEXEC: isize = 8;
const EISDIR: isize = 21;

fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { syscall(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0]) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(255)
}

/// The length of a NUL-terminated string.
unsafe fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller passes a NUL-terminated string.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

#[repr(C)]
struct IoVec {
    base: *const u8,
    len: usize,
}

/// Writes `parts` to stderr in one writev, so the line is not torn.
fn report(parts: &[(*const u8, usize)]) {
    let mut iov = [const {
        IoVec {
            base: core::ptr::null(),
            len: 0,
        }
    }; 6];
    let n = parts.len().min(iov.len());
    for (slot, part) in iov.iter_mut().zip(parts) {
        slot.base = part.0;
        slot.len = part.1;
    }
    // SAFETY: `iov` holds `n` valid buffers.
    unsafe { syscall(nr::WRITEV, [2, iov.as_ptr() as usize, n, 0, 0]) };
}

fn usage() -> ! {
    let msg = b"berth-init: usage: berth-init -- PROGRAM ARGV...\n";
    report(&[(msg.as_ptr(), msg.len())]);
    exit(2)
}

/// The child: restore the mask, exec PROGRAM; on failure say why and exit as
/// a shell would (126 when the file cannot be run, 127 otherwise, as
/// berth-runtime's `exec_failure_code`).
unsafe fn run_child(
    path: *const u8,
    argv: *const *const u8,
    envp: *const *const u8,
    mask: u64,
) -> ! {
    // SAFETY: pointers to a live sigset and the caller's argv and envp.
    let err = unsafe {
        syscall(
            nr::RT_SIGPROCMASK,
            [SIG_SETMASK, &mask as *const u64 as usize, 0, SIGSET_SIZE, 0],
        );
        -syscall(
            nr::EXECVE,
            [path as usize, argv as usize, envp as usize, 0, 0],
        )
    };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = err.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    let head = b"berth-init: exec ";
    let mid = b": errno ";
    // SAFETY: `path` is NUL-terminated (it came from argv).
    let path_len = unsafe { strlen(path) };
    report(&[
        (head.as_ptr(), head.len()),
        (path, path_len),
        (mid.as_ptr(), mid.len()),
        (digits[at..].as_ptr(), digits.len() - at),
        (b"\n".as_ptr(), 1),
    ]);
    exit(match err {
        EACCES | ENOEXEC | EISDIR => 126,
        _ => 127,
    })
}

/// The parent: wait for signals, forward them, reap, and exit as `child` did.
fn supervise(child: isize, all: u64) -> ! {
    loop {
        // SAFETY: a live sigset; no siginfo or timeout wanted.
        let sig = unsafe {
            syscall(
                nr::RT_SIGTIMEDWAIT,
                [&all as *const u64 as usize, 0, 0, SIGSET_SIZE, 0],
            )
        };
        if sig <= 0 {
            continue;
        }
        if sig as usize != SIGCHLD {
            // SAFETY: kill takes integers.
            unsafe { syscall(nr::KILL, [child as usize, sig as usize, 0, 0, 0]) };
            continue;
        }
        // Reap everything that has exited; stop when the main child is among them.
        loop {
            let mut status: i32 = 0;
            // SAFETY: a live int for the status; no rusage.
            let pid = unsafe {
                syscall(
                    nr::WAIT4,
                    [usize::MAX, &mut status as *mut i32 as usize, WNOHANG, 0, 0],
                )
            };
            if pid <= 0 {
                break;
            }
            if pid != child {
                continue;
            }
            let low = status & 0x7f;
            if low == 0 {
                exit((status >> 8) & 0xff);
            }
            if low != 0x7f {
                exit(128 + low);
            }
        }
    }
}

/// Called by `_start` with the initial stack pointer.
unsafe extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: the stack layout the kernel sets up for a new program.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argc, argv, argv.add(argc + 1))
    };
    // argv: berth-init -- PROGRAM ARGV...
    // SAFETY: argv has argc entries.
    let dashes = argc >= 3
        && unsafe {
            let a = *argv.add(1);
            *a == b'-' && *a.add(1) == b'-' && *a.add(2) == 0
        };
    if !dashes {
        usage();
    }
    // SAFETY: argv has at least three entries (checked above).
    let (path, child_argv) = unsafe { (*argv.add(2), argv.add(3)) };

    // Exec'd from a memfd, comm is the fd's number: name the process.
    let name = b"berth-init\0";
    // SAFETY: a NUL-terminated name.
    unsafe { syscall(nr::PRCTL, [PR_SET_NAME, name.as_ptr() as usize, 0, 0, 0]) };
    // Not dumpable, as the runtime's code in the container is: the
    // container's processes cannot ptrace PID 1 or open its /proc entries
    // (exe, mem, environ). The child's exec makes its program dumpable again.
    // SAFETY: prctl with integer arguments.
    unsafe { syscall(nr::PRCTL, [PR_SET_DUMPABLE, 0, 0, 0, 0]) };

    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: live sigsets.
    let rc = unsafe {
        syscall(
            nr::RT_SIGPROCMASK,
            [
                SIG_SETMASK,
                &all as *const u64 as usize,
                &mut old as *mut u64 as usize,
                SIGSET_SIZE,
                0,
            ],
        )
    };
    if rc < 0 {
        exit(1);
    }
    // fork: clone with SIGCHLD and nothing shared, on the same stack.
    // SAFETY: clone without CLONE_VM gives the child its own copy of memory.
    let child = unsafe { syscall(nr::CLONE, [SIGCHLD, 0, 0, 0, 0]) };
    if child == 0 {
        // SAFETY: argv and envp as the kernel laid them out.
        unsafe { run_child(path, child_argv, envp, old) }
    }
    if child < 0 {
        let msg = b"berth-init: fork failed\n";
        report(&[(msg.as_ptr(), msg.len())]);
        exit(1);
    }
    supervise(child, all)
}
