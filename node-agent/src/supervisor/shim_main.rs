//! `berth-shim`: the per-container log and exit holder the supervisor starts
//! (see `berth_agent::supervisor::shim`). Same as `berth-agent shim`.

fn main() -> std::process::ExitCode {
    berth_agent::supervisor::main_shim(std::env::args_os().skip(1).collect())
}
