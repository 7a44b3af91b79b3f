//! The typed pass: the merged tree read into the [`Model`](crate::model::Model),
//! every key checked against the Compose spec's tables (unknown: an error
//! with the closest key; not honoured: a warning saying what berth does
//! instead), every value against its syntax. It goes on past an error, so
//! one run reports them all.

mod service;
mod top;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diag, Pos};
use crate::keys::{self, Handling, Table};
use crate::model::Dur;
use crate::values;
use crate::yaml::{Key, Node, Value};

pub use top::read_model;

pub struct Reader<'a> {
    pub diag: Diag,
    /// The variables (process environment over `.env`).
    pub env: &'a BTreeMap<String, String>,
    /// The directory of the first file: relative paths start here.
    pub base_dir: PathBuf,
}

impl<'a> Reader<'a> {
    pub fn new(env: &'a BTreeMap<String, String>, base_dir: PathBuf) -> Reader<'a> {
        Reader {
            diag: Diag::default(),
            env,
            base_dir,
        }
    }

    pub fn error(&mut self, at: &Pos, message: impl Into<String>) {
        self.diag.error(at, message);
    }

    pub fn warn(&mut self, at: &Pos, message: impl Into<String>) {
        self.diag.warn(at, message);
    }

    /// The entries of a mapping whose keys `table` allows. `x-` keys are
    /// left out silently, keys berth does not honour with a warning, keys
    /// that are not Compose with an error. None (after an error) when the
    /// node is not a mapping.
    pub fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        table: Table,
    ) -> Option<Vec<(&'n Key, &'n Node)>> {
        // `limits:` with nothing under it is an empty mapping.
        if node.value == Value::Null {
            return Some(Vec::new());
        }
        let Some(entries) = node.as_map() else {
            self.error(
                &node.at,
                format!("{what}: expected a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if key.name.starts_with("x-") {
                continue;
            }
            match keys::handling(table, &key.name) {
                Some(Handling::Honoured) => out.push((key, value)),
                Some(Handling::Silent) => {}
                Some(Handling::Warn(instead)) => self.warn(
                    &key.at,
                    format!("`{}` of {what} is ignored: {instead}", key.name),
                ),
                None => self.unknown_key(key, what, table),
            }
        }
        Some(out)
    }

    fn unknown_key(&mut self, key: &Key, what: &str, table: Table) {
        let mut message = format!("unknown key `{}` in {what}", key.name);
        if let Some(close) = keys::closest(table, &key.name) {
            message.push_str(&format!(": did you mean `{close}`?"));
        }
        let allowed: Vec<&str> = table
            .iter()
            .filter(|(_, h)| table.len() <= 12 || *h == Handling::Honoured)
            .map(|(k, _)| *k)
            .collect();
        message.push_str(&format!(" (allowed: {}", allowed.join(", ")));
        if allowed.len() < table.len() {
            message.push_str(", and the other keys of the Compose spec");
        }
        message.push(')');
        self.error(&key.at, message);
    }

    pub fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.scalar_text() {
            Some(t) => Some(t),
            None => {
                self.error(
                    &node.at,
                    format!("{what}: expected text, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// Text that may be absent (`null`).
    pub fn opt_text(&mut self, node: &Node, what: &str) -> Option<String> {
        if node.value == Value::Null {
            return None;
        }
        self.text(node, what)
    }

    /// `parsed`, or an error saying what was expected instead of the value.
    fn expect<T>(
        &mut self,
        node: &Node,
        what: &str,
        expected: &str,
        parsed: Option<T>,
    ) -> Option<T> {
        if parsed.is_none() {
            self.error(
                &node.at,
                format!("{what}: expected {expected}, found {}", shown(node)),
            );
        }
        parsed
    }

    /// The items of a list (after an error, none).
    pub fn list<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            _ => {
                self.error(
                    &node.at,
                    format!("{what}: expected a list, found {}", node.kind()),
                );
                &[]
            }
        }
    }

    pub fn uint(&mut self, node: &Node, what: &str) -> Option<u64> {
        let parsed = match &node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        self.expect(node, what, "a whole number", parsed)
    }

    pub fn u32(&mut self, node: &Node, what: &str) -> Option<u32> {
        let n = self.uint(node, what)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(&node.at, format!("{what}: {n} is too large"));
                None
            }
        }
    }

    pub fn int(&mut self, node: &Node, what: &str) -> Option<i64> {
        let parsed = match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        self.expect(node, what, "a whole number", parsed)
    }

    pub fn float(&mut self, node: &Node, what: &str) -> Option<f64> {
        let parsed = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        self.expect(node, what, "a number", parsed)
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let parsed = match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Some(true),
                "false" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        self.expect(node, what, "true or false", parsed)
    }

    /// One of `choices`.
    pub fn choice(&mut self, node: &Node, what: &str, choices: &[&str]) -> Option<String> {
        let text = self.text(node, what)?;
        if choices.contains(&text.as_str()) {
            Some(text)
        } else {
            self.error(
                &node.at,
                format!("{what}: expected {}, found {text:?}", one_of(choices)),
            );
            None
        }
    }

    /// A value parsed by one of the syntaxes of [`values`].
    pub fn parsed<T>(
        &mut self,
        node: &Node,
        what: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(node, what)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(&node.at, format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Dur> {
        self.parsed(node, what, values::parse_duration).map(Dur)
    }

    pub fn bytes(&mut self, node: &Node, what: &str) -> Option<u64> {
        if let Value::Int(i) = node.value
            && let Ok(n) = u64::try_from(i)
        {
            return Some(n);
        }
        self.parsed(node, what, values::parse_bytes)
    }

    /// A list of text; a single text counts as a list of one.
    pub fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items.iter().filter_map(|i| self.text(i, what)).collect(),
            _ => self.text(node, what).into_iter().collect(),
        }
    }

    /// `KEY: VALUE` pairs (lists of `KEY=VALUE` were made mappings before
    /// the merge); a key without a value is empty text.
    pub fn string_map(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Null => {}
            Value::Seq(items) => {
                for item in items {
                    if let Some(text) = self.text(item, what) {
                        let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                        out.insert(k.to_string(), v.to_string());
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let value = match &v.value {
                        Value::Null => Some(String::new()),
                        _ => self.text(v, &format!("{what} {}", k.name)),
                    };
                    if let Some(value) = value {
                        out.insert(k.name.clone(), value);
                    }
                }
            }
            _ => self.error(
                &node.at,
                format!(
                    "{what}: expected a mapping or a list of KEY=VALUE, found {}",
                    node.kind()
                ),
            ),
        }
        out
    }

    /// A path of the files, made absolute: `~` is $HOME, a relative path
    /// starts at the directory of the first file.
    pub fn path(&self, text: &str) -> PathBuf {
        let home = self.env.get("HOME").map(String::as_str).unwrap_or("/root");
        let expanded = if text == "~" {
            PathBuf::from(home)
        } else if let Some(rest) = text.strip_prefix("~/") {
            Path::new(home).join(rest)
        } else {
            PathBuf::from(text)
        };
        normalize(&self.base_dir.join(expanded))
    }
}

/// `a/./b/../c` -> `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A value as the user wrote it, for messages.
fn shown(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => format!("{s:?}"),
        _ => node
            .scalar_text()
            .unwrap_or_else(|| node.kind().to_string()),
    }
}

fn one_of(choices: &[&str]) -> String {
    match choices {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Reads `text` (one file, no interpolation) as the loader would.
#[cfg(test)]
pub(crate) fn read_text(text: &str, env: &[(&str, &str)]) -> (crate::model::Model, Diag) {
    use std::sync::Arc;
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut root = crate::yaml::parse(text, &Arc::from("t.yml")).expect("test YAML parses");
    if let Value::Map(top) = &mut root.value {
        for (k, v) in top.iter_mut() {
            if k.name == "services"
                && let Value::Map(services) = &mut v.value
            {
                for (_, s) in services.iter_mut() {
                    crate::merge::normalize_service(s);
                }
            }
        }
    }
    let mut reader = Reader::new(&env, PathBuf::from("/srv/app"));
    let model = read_model(&mut reader, &root);
    (model, reader.diag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(diag: &Diag) -> (Vec<String>, Vec<String>) {
        (
            diag.errors
                .iter()
                .map(|e| format!("{}:{} {}", e.at.line, e.at.column, e.message))
                .collect(),
            diag.warnings
                .iter()
                .map(|w| format!("{}:{} {}", w.at.line, w.at.column, w.message))
                .collect(),
        )
    }

    #[test]
    fn keys_are_honoured_warned_ignored_or_refused() {
        let (model, diag) = read_text(
            "services:\n  web:\n    image: a\n    x-note: hi\n    privileged: true\n    replica: 3\nx-top: 1\n",
            &[],
        );
        let (errors, warnings) = messages(&diag);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("6:5 unknown key `replica` in service web (allowed: image, command,"),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with("and the other keys of the Compose spec)"),
            "{errors:?}"
        );
        assert_eq!(
            warnings,
            [
                "5:5 `privileged` of service web is ignored: tasks are never privileged; add capabilities with cap_add"
            ]
        );
        assert_eq!(model.services["web"].image, "a");
    }

    #[test]
    fn small_tables_list_every_key_and_suggest_the_closest() {
        let (_, diag) = read_text(
            "services:\n  web:\n    image: a\n    deploy: {replicas: 1, mod: global}\n",
            &[],
        );
        let (errors, _) = messages(&diag);
        assert_eq!(
            errors,
            [
                "4:27 unknown key `mod` in service web deploy: did you mean `mode`? (allowed: mode, replicas, resources, placement, restart_policy, update_config, rollback_config, labels, endpoint_mode)"
            ]
        );
    }

    #[test]
    fn numbers_and_booleans_take_text_too() {
        let (model, diag) = read_text(
            "services:\n  web:\n    image: a\n    tty: 'yes'\n    init: false\n    deploy: {replicas: '4'}\n",
            &[],
        );
        assert!(diag.errors.is_empty(), "{:?}", diag.errors);
        let web = &model.services["web"];
        assert!(web.tty && !web.init);
        assert_eq!(web.deploy.replicas, 4);
        let (_, diag) = read_text(
            "services:\n  web:\n    image: a\n    tty: maybe\n    deploy: {replicas: -1}\n",
            &[],
        );
        let (errors, _) = messages(&diag);
        assert_eq!(
            errors,
            [
                "4:10 service web: tty: expected true or false, found \"maybe\"",
                "5:24 service web deploy: replicas: expected a whole number, found -1",
            ]
        );
    }

    #[test]
    fn paths_resolve_from_the_first_files_directory() {
        let env = BTreeMap::from([("HOME".to_string(), "/home/u".to_string())]);
        let r = Reader::new(&env, PathBuf::from("/srv/app"));
        assert_eq!(r.path("./a/../b.txt"), PathBuf::from("/srv/app/b.txt"));
        assert_eq!(r.path("conf/x"), PathBuf::from("/srv/app/conf/x"));
        assert_eq!(r.path("~/s"), PathBuf::from("/home/u/s"));
        assert_eq!(r.path("/abs"), PathBuf::from("/abs"));
    }
}
