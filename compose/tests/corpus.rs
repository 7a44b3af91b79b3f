//! Compose files written for other tools (tests/corpus/, sources and
//! licences in LICENSES.md): each loads without a panic, to a project or to
//! located errors, and in a project every key is honoured or named in a
//! warning.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_compose::keys::{self, Handling, Table};
use berth_compose::yaml::{self, Node};
use berth_compose::{Project, Warning};
use common::{load_files, write};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every key of `node` that `table` knows as honoured is fine; every other
/// key (not `x-`) must be named in a warning.
fn check_keys(
    node: &Node,
    table: Table,
    warnings: &[Warning],
    what: &str,
    missing: &mut Vec<String>,
) {
    let Some(entries) = node.as_map() else { return };
    for (k, _) in entries {
        if k.name.starts_with("x-") {
            continue;
        }
        match keys::handling(table, &k.name) {
            Some(Handling::Honoured | Handling::Silent) => {}
            _ => {
                let named = format!("`{}`", k.name);
                if !warnings
                    .iter()
                    .any(|w| w.message.contains(&named) && w.at.line == k.at.line)
                {
                    missing.push(format!("{what}: {} at line {}", k.name, k.at.line));
                }
            }
        }
    }
}

fn keys_are_honoured_or_warned(file: &Path, project: &Project) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("corpus file");
    let root = yaml::parse(&text, &Arc::from("corpus")).expect("it loaded, so it parses");
    let w = &project.warnings;
    let mut missing = Vec::new();
    check_keys(&root, keys::TOP, w, "top level", &mut missing);
    if let Some(services) = root.get("services").and_then(Node::as_map) {
        for (name, service) in services {
            let what = format!("service {}", name.name);
            check_keys(service, keys::SERVICE, w, &what, &mut missing);
            if let Some(deploy) = service.get("deploy") {
                check_keys(deploy, keys::DEPLOY, w, &what, &mut missing);
            }
            if let Some(h) = service.get("healthcheck") {
                check_keys(h, keys::HEALTHCHECK, w, &what, &mut missing);
            }
        }
    }
    for (section, table) in [
        ("networks", keys::NETWORK),
        ("volumes", keys::VOLUME),
        ("configs", keys::CONFIG),
        ("secrets", keys::SECRET),
    ] {
        if let Some(objects) = root.get(section).and_then(Node::as_map) {
            for (name, o) in objects {
                check_keys(
                    o,
                    table,
                    w,
                    &format!("{section} {}", name.name),
                    &mut missing,
                );
            }
        }
    }
    missing
}

/// The files a project reads at conversion, made (empty) when they would
/// be in the scratch dir.
fn create_referenced_files(dir: &Path, project: &Project) {
    let m = &project.model;
    let paths = m
        .services
        .values()
        .flat_map(|s| s.env_file.iter().map(|f| f.path.clone()))
        .chain(
            m.configs
                .values()
                .chain(m.secrets.values())
                .filter_map(|o| o.file.as_ref().map(|f| f.path.clone())),
        );
    for path in paths {
        if path.starts_with(dir) && !path.exists() {
            write(
                dir,
                path.strip_prefix(dir)
                    .expect("under dir")
                    .to_str()
                    .expect("utf-8"),
                "",
            );
        }
    }
}

#[test]
fn the_corpus_loads_without_panic_and_warns_for_every_key() {
    let files = corpus();
    assert!(files.len() >= 15, "the corpus has {} files", files.len());
    let (mut ok, mut refused) = (0, 0);
    for file in &files {
        let dir = tempfile::tempdir().unwrap();
        let copy = write(
            dir.path(),
            "compose.yml",
            &std::fs::read_to_string(file).unwrap(),
        );
        let vars = [("HOME", "/home/corpus"), ("USER", "corpus")];
        let result = std::panic::catch_unwind(|| load_files(std::slice::from_ref(&copy), &vars))
            .unwrap_or_else(|_| panic!("{} panicked", file.display()));
        match result {
            Ok(project) => {
                ok += 1;
                let missing = keys_are_honoured_or_warned(file, &project);
                assert!(
                    missing.is_empty(),
                    "{}: keys neither honoured nor warned: {missing:?}",
                    file.display()
                );
                create_referenced_files(dir.path(), &project);
                if let Err(e) = project.to_stack_spec("corpus") {
                    assert!(
                        e.0.iter().all(|e| e.at.line >= 1),
                        "{}: {e}",
                        file.display()
                    );
                }
                assert!(!project.render().is_empty());
            }
            Err(errors) => {
                refused += 1;
                assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    assert!(
                        e.at.line >= 1 && e.at.column >= 1,
                        "{}: {e}",
                        file.display()
                    );
                    assert_eq!(&*e.at.file, copy.display().to_string(), "{e}");
                }
                eprintln!("{}: refused:\n{errors}", file.display());
            }
        }
    }
    eprintln!("corpus: {ok} loaded, {refused} refused with located errors");
}
