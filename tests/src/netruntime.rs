//! Tokio runtimes inside a test host's network namespace.
//!
//! A network namespace belongs to a thread, so a runtime whose every thread joins
//! the namespace when it starts opens all its sockets there.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use anyhow::{Context, Result};

pub fn runtime_in(net: &File) -> Result<tokio::runtime::Runtime> {
    let net = Arc::new(net.try_clone().context("failed to duplicate a netns fd")?);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // SAFETY: setns on a valid fd affects only the calling thread.
            let rc = unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "failed to join a test host's network namespace");
        })
        .build()
        .context("failed to build a runtime")
}

/// Runs `fut` on one of the runtime's (namespaced) threads and waits for it.
pub fn run<F>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("task panicked") })
}
