//! `berth-shim`: the per-container process (see `supervisor/shim.rs`), a binary
//! of its own so that each running container costs only what the shim's code
//! needs: the agent's binary, with its async runtime, gRPC and image code, is
//! mapped for nothing. `berth-shim exec-wait ...` is the helper of
//! `berth exec -t` (`supervisor/exec_wait.rs`).

fn main() -> std::process::ExitCode {
    berth_agent::supervisor::main_shim(std::env::args_os().skip(1).collect())
}
