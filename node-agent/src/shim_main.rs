//! `berth-shim`: the per-container process (see `supervisor/shim.rs`), a binary
//! of its own so that each running container costs only what the shim's code
//! needs: the agent's binary, with its async runtime, gRPC and image code, is
//! mapped for nothing. `berth-shim exec-wait ...` is the helper of
//! `berth exec -t` (`supervisor/exec_wait.rs`); `berth-shim --version` says
//! which build it is (as the other binaries).

fn main() -> std::process::ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && (args[0] == "--version" || args[0] == "-V") {
        println!("berth-shim {}", berth_proto::VERSION);
        return std::process::ExitCode::SUCCESS;
    }
    berth_agent::supervisor::main_shim(args)
}
