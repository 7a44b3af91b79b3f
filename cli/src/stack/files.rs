//! Reading Compose files into a `StackSpec` (berth-compose does the work);
//! warnings go to stderr, each naming its file, line and column.

use std::path::PathBuf;

use anyhow::{Result, bail};
use berth_proto::v1::StackSpec;

/// The stack the files describe, named `stack`.
pub fn load(files: &[PathBuf], stack: &str) -> Result<StackSpec> {
    check_stack_name(stack)?;
    let project = project(files)?;
    match project.to_stack_spec(stack) {
        Ok(spec) => Ok(spec),
        Err(errors) => bail!("{errors}"),
    }
}

/// `stack config`: the merged, interpolated, resolved file.
pub fn config(files: &[PathBuf]) -> Result<()> {
    let project = project(files)?;
    print!("{}", project.render());
    Ok(())
}

fn project(files: &[PathBuf]) -> Result<berth_compose::Project> {
    let options = berth_compose::Options {
        files: files.to_vec(),
        env: std::env::vars().collect(),
    };
    let project = match berth_compose::load(&options) {
        Ok(project) => project,
        Err(errors) => bail!("{errors}"),
    };
    for warning in &project.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(project)
}

/// Docker's rule for stack names: they prefix every object's name.
fn check_stack_name(stack: &str) -> Result<()> {
    let mut chars = stack.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || stack.len() > 63 {
        bail!(
            "stack name {stack:?} is not valid: letters, digits, '_', '.' and '-', starting \
             with a letter or digit, at most 63 characters"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_follow_dockers_rule() {
        for ok in ["demo", "web-1", "a.b_c", "9lives"] {
            check_stack_name(ok).expect(ok);
        }
        for bad in ["", "-x", "a b", "x/y", "_x"] {
            assert!(check_stack_name(bad).is_err(), "{bad:?}");
        }
    }
}
