//! The pipeline of [`load`](crate::load): read each file, resolve anchors
//! and merge keys (the YAML parser), interpolate its values, normalize its
//! services, merge the files in order, read the typed model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diag, Errors, Pos};
use crate::interpolate::interpolate;
use crate::merge::{merge_files, normalize_service};
use crate::yaml::{self, Node, Value};
use crate::{Options, Project, dotenv, read};

pub fn load(options: &Options) -> Result<Project, Errors> {
    let Some(first) = options.files.first() else {
        return Err(Errors::one(
            Pos::file_start("(no file)"),
            "no Compose file given",
        ));
    };
    let base_dir = base_dir(first);
    let mut diag = Diag::default();
    let env = variables(options, &base_dir, &mut diag);
    let mut merged: Option<Node> = None;
    for path in &options.files {
        let file: Arc<str> = Arc::from(path.display().to_string());
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                diag.error(&Pos::new(&file, 1, 1), format!("cannot read the file: {e}"));
                continue;
            }
        };
        let mut node = match yaml::parse(&text, &file) {
            Ok(n) => n,
            Err(e) => {
                diag.errors.push(e);
                continue;
            }
        };
        if !matches!(node.value, Value::Map(_)) {
            diag.error(&node.at, format!("expected a mapping of services, networks, ... at the top of the file, found {}", node.kind()));
            continue;
        }
        interpolate_tree(&mut node, &env, &mut diag);
        normalize(&mut node);
        merged = Some(match merged {
            None => node,
            Some(base) => merge_files(base, node),
        });
    }
    if !diag.errors.is_empty() {
        return Err(diag.into_errors());
    }
    let Some(root) = merged else {
        return Err(Errors::one(
            Pos::file_start("(no file)"),
            "no Compose file given",
        ));
    };
    let mut reader = read::Reader::new(&env, base_dir.clone());
    let model = read::read_model(&mut reader, &root);
    diag.errors.append(&mut reader.diag.errors);
    diag.warnings.append(&mut reader.diag.warnings);
    let warnings = diag.into_result()?;
    Ok(Project {
        warnings,
        model,
        env,
        base_dir,
    })
}

/// The directory of the first file, absolute.
fn base_dir(first: &Path) -> PathBuf {
    let dir = first.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The process environment over `.env` beside the first file (docker
/// compose's order: what the shell sets wins).
fn variables(options: &Options, base_dir: &Path, diag: &mut Diag) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let path = base_dir.join(".env");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let file: Arc<str> = Arc::from(path.display().to_string());
        match dotenv::parse(&text) {
            Ok(entries) => {
                for e in entries {
                    let value = e.value.or_else(|| options.env.get(&e.key).cloned());
                    if let Some(value) = value {
                        env.insert(e.key, value);
                    }
                }
            }
            Err(e) => {
                let line = match &e {
                    dotenv::DotenvError::BadKey { line, .. } => *line,
                };
                diag.error(&Pos::new(&file, line, 1), e.to_string());
            }
        }
    }
    env.extend(options.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Interpolates every text value (not keys, not `x-` sections).
fn interpolate_tree(node: &mut Node, env: &BTreeMap<String, String>, diag: &mut Diag) {
    match &mut node.value {
        Value::Str(text) if text.contains('$') => {
            match interpolate(text, &|name| env.get(name).cloned()) {
                Ok(out) => {
                    for name in out.unset {
                        diag.warn(
                            &node.at,
                            format!("variable {name} is not set: it is empty here"),
                        );
                    }
                    *text = out.text;
                }
                Err(e) => diag.error(&node.at, e.to_string()),
            }
        }
        Value::Seq(items) => {
            for item in items {
                interpolate_tree(item, env, diag);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                if !k.name.starts_with("x-") {
                    interpolate_tree(v, env, diag);
                }
            }
        }
        _ => {}
    }
}

fn normalize(root: &mut Node) {
    if let Value::Map(top) = &mut root.value {
        for (k, v) in top.iter_mut() {
            if k.name == "services"
                && let Value::Map(services) = &mut v.value
            {
                for (_, s) in services.iter_mut() {
                    normalize_service(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, files: &[(&str, &str)], env: &[(&str, &str)]) -> Options {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Options {
            files: vec![dir.join(files[0].0)],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn dot_env_under_the_process_environment() {
        let dir = tempfile::tempdir().unwrap();
        let o = options(
            dir.path(),
            &[
                ("c.yml", "services:\n  w:\n    image: ${IMG}:${TAG}\n"),
                (".env", "IMG=from-file\nTAG=1\n"),
            ],
            &[("TAG", "2")],
        );
        let project = load(&o).unwrap();
        assert_eq!(project.model.services["w"].image, "from-file:2");
    }

    #[test]
    fn a_bad_dot_env_line_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let o = options(
            dir.path(),
            &[("c.yml", "services: {}\n"), (".env", "OK=1\n\nNOT OK\n")],
            &[],
        );
        let e = load(&o).unwrap_err().to_string();
        assert!(
            e.ends_with(".env:3:1: line 3: \"NOT OK\" is not a variable name"),
            "{e}"
        );
    }

    #[test]
    fn keys_and_extensions_are_not_interpolated() {
        let dir = tempfile::tempdir().unwrap();
        let o = options(
            dir.path(),
            &[(
                "c.yml",
                "x-raw: $1 not a variable\nservices:\n  w:\n    image: a\n    labels: {$$k: $$v}\n",
            )],
            &[],
        );
        let project = load(&o).unwrap();
        let labels = &project.model.services["w"].labels;
        assert_eq!(labels.get("$$k").map(String::as_str), Some("$v"));
    }

    #[test]
    fn debug_prints_no_variable() {
        let dir = tempfile::tempdir().unwrap();
        let o = options(
            dir.path(),
            &[("c.yml", "services: {}\n")],
            &[("API_TOKEN", "hunter2")],
        );
        let shown = format!("{:?}", load(&o).unwrap());
        assert!(
            !shown.contains("hunter2") && shown.contains("1 variables"),
            "{shown}"
        );
    }

    #[test]
    fn no_files_and_missing_files() {
        assert!(
            load(&Options::default())
                .unwrap_err()
                .to_string()
                .contains("no Compose file given")
        );
        let e = load(&Options {
            files: vec!["/nonexistent/c.yml".into()],
            env: BTreeMap::new(),
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/c.yml:1:1: cannot read the file"),
            "{e}"
        );
    }
}
