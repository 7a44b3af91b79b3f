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

    pub fn uint(&mut self, node: &Node, what: &str) -> Option<u64> {
        let parsed = match &node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                &node.at,
                format!("{what}: expected a whole number, found {}", shown(node)),
            );
        }
        parsed
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
        if parsed.is_none() {
            self.error(
                &node.at,
                format!("{what}: expected a whole number, found {}", shown(node)),
            );
        }
        parsed
    }

    pub fn float(&mut self, node: &Node, what: &str) -> Option<f64> {
        let parsed = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                &node.at,
                format!("{what}: expected a number, found {}", shown(node)),
            );
        }
        parsed
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
        if parsed.is_none() {
            self.error(
                &node.at,
                format!("{what}: expected true or false, found {}", shown(node)),
            );
        }
        parsed
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
