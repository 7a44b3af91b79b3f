//! Helpers of the integration tests: files in a temp dir, loaded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_compose::{Errors, Options, Project, load};

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(&path, text).expect("write file");
    path
}

pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn load_files(files: &[PathBuf], vars: &[(&str, &str)]) -> Result<Project, Errors> {
    load(&Options {
        files: files.to_vec(),
        env: env(vars),
    })
}

/// One file in a fresh temp dir, loaded.
pub fn load_text(text: &str) -> (tempfile::TempDir, Result<Project, Errors>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "compose.yml", text);
    let result = load_files(&[file], &[("HOME", "/home/u")]);
    (dir, result)
}
