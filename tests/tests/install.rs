//! `deploy/install.sh` into a scratch prefix, units dir and defaults file
//! (#17): it installs this build's binaries and the units with `Delegate=yes`
//! and `KillMode=process` pointing at the prefix, a second run changes
//! nothing and says so, `--uninstall` removes exactly what it installed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use berth_testhost::bin_path;

/// Every binary a host needs: the agent refuses to start without the
/// per-container shim and the runtime beside it.
const BINARIES: [&str; 5] = [
    "berth",
    "berth-controller",
    "berth-agent",
    "berth-shim",
    "berth-runtime",
];
const UNITS: [&str; 2] = ["berth-controller.service", "berth-agent.service"];

fn install(scratch: &Path, extra: &[&str]) -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/install.sh");
    let from = bin_path("berth-agent");
    let from = from.parent().context("the binaries' directory")?;
    let out = Command::new(&script)
        .arg("--from")
        .arg(from)
        .arg("--prefix")
        .arg(scratch.join("bin"))
        .arg("--units")
        .arg(scratch.join("units"))
        .arg("--defaults")
        .arg(scratch.join("default/berth"))
        .args(extra)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        out.status.success(),
        "install.sh {extra:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[test]
fn install_sh_installs_once_changes_nothing_twice_and_uninstalls() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let first = install(scratch.path(), &[])?;
    for b in BINARIES {
        let path = scratch.path().join("bin").join(b);
        assert!(
            first.contains(&format!("installed  {}", path.display())),
            "{first}"
        );
        assert_eq!(std::fs::read(&path)?, std::fs::read(bin_path(b))?, "{b}");
    }
    let agent_unit = std::fs::read_to_string(scratch.path().join("units/berth-agent.service"))?;
    assert!(agent_unit.contains("\nDelegate=yes\n"), "{agent_unit}");
    assert!(agent_unit.contains("\nKillMode=process\n"), "{agent_unit}");
    let exec = format!(
        "ExecStart={}/berth-agent ",
        scratch.path().join("bin").display()
    );
    assert!(agent_unit.contains(&exec), "{agent_unit}");
    assert!(scratch.path().join("default/berth").exists());

    let second = install(scratch.path(), &[])?;
    assert!(!second.contains("installed  "), "{second}");
    assert!(!second.contains("updated  "), "{second}");
    assert_eq!(
        second.matches("unchanged  ").count(),
        BINARIES.len() + UNITS.len()
    );

    let gone = install(scratch.path(), &["--uninstall"])?;
    assert!(gone.contains("removed"), "{gone}");
    for dir in ["bin", "units", "default"] {
        let left: Vec<_> = std::fs::read_dir(scratch.path().join(dir))?.collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    Ok(())
}
