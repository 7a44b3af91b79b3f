//! A Compose file as a tree of positioned YAML values: serde-saphyr parses
//! the text (anchors, aliases and `<<` merge keys resolved, alias bombs
//! bounded), every node keeps the line and column it was written at, so each
//! later pass can point at `FILE:LINE:COLUMN`.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Error, Pos};

/// A YAML value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub at: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// In file order; keys are unique (a duplicate key is an error).
    Map(Vec<(Key, Node)>),
}

/// A mapping key (always text: `80: x` is the key "80") and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub at: Pos,
}

impl Node {
    pub fn new(value: Value, at: Pos) -> Node {
        Node { value, at }
    }

    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// A scalar as the text it stands for (`3`, `true`, `0.5`, `web`); None
    /// for null, lists and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
}

/// How deep collections may nest (a Compose file needs about 8).
const MAX_DEPTH: usize = 32;

/// Parses one file's text. An empty file is an empty mapping.
pub fn parse(text: &str, file: &Arc<str>) -> Result<Node, Error> {
    let options = serde_saphyr::options! {
        // Compose files nest a few levels; a deep file is refused before
        // the recursive descent can exhaust a thread's stack.
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH },
        // yes/no/on/off stay text, as go-yaml v3 (docker's) reads them.
        strict_booleans: true,
        // 0755 stays "0755": modes are octal, as Docker reads them.
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    };
    if text.trim().is_empty() {
        return Ok(Node::new(Value::Map(Vec::new()), Pos::new(file, 1, 1)));
    }
    let raw: Raw = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let at = e
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| Pos::new(file, l.line() as usize, l.column() as usize))
            .unwrap_or_else(|| Pos::new(file, 1, 1));
        Error {
            at,
            message: format!("not a valid YAML file: {}", reason(&e.to_string())),
        }
    })?;
    into_node(raw, file, text)
}

/// serde-saphyr's message in the user's terms.
fn reason(message: &str) -> String {
    if message.contains("Depth") || message.contains("recursion limit") {
        return format!("collections nest deeper than {MAX_DEPTH} levels");
    }
    strip_location(message)
}

/// serde-saphyr's message without its own " at line L column C" (the
/// position is printed in front).
fn strip_location(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message);
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn into_node(raw: Raw, file: &Arc<str>, text: &str) -> Result<Node, Error> {
    let at = Pos::new(
        file,
        raw.0.referenced.line().max(1) as usize,
        raw.0.referenced.column().max(1) as usize,
    );
    let value = match raw.0.value {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Int(i) => Value::Int(i),
        // A float keeps the text it was written as (`1.10` stays "1.10" in
        // an environment value); whatever reads a number parses text too.
        RawValue::Float(f) => match source_text(text, &raw.0.defined) {
            Some(t) if t.trim().parse::<f64>().is_ok_and(|v| v == f) => {
                Value::Str(t.trim().to_string())
            }
            _ => Value::Float(f),
        },
        RawValue::Str(s) => Value::Str(s),
        RawValue::Seq(items) => Value::Seq(
            items
                .into_iter()
                .map(|item| into_node(item, file, text))
                .collect::<Result<_, _>>()?,
        ),
        RawValue::Map(entries) => {
            let mut out: Vec<(Key, Node)> = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key_node = into_node(key, file, text)?;
                let Some(name) = key_node.scalar_text() else {
                    let message = format!("a key must be text, found {}", key_node.kind());
                    return Err(Error {
                        at: key_node.at,
                        message,
                    });
                };
                if out.iter().any(|(k, _)| k.name == name) {
                    return Err(Error {
                        at: key_node.at,
                        message: format!("key {name:?} is given twice"),
                    });
                }
                out.push((
                    Key {
                        name,
                        at: key_node.at,
                    },
                    into_node(value, file, text)?,
                ));
            }
            Value::Map(out)
        }
    };
    Ok(Node { value, at })
}

/// The text of the file a node was read from, when the parser knows it.
fn source_text<'t>(text: &'t str, at: &serde_saphyr::Location) -> Option<&'t str> {
    let span = at.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
}

/// What serde-saphyr hands over, before the file name is attached.
struct Raw(Spanned<RawValue>);

enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Raw>),
    Map(Vec<(Raw, Raw)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        Spanned::<RawValue>::deserialize(d).map(Raw)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawValue, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<RawValue, E> {
        Ok(i64::try_from(u).map_or_else(|_| RawValue::Str(u.to_string()), RawValue::Int))
    }
    fn visit_i128<E: de::Error>(self, i: i128) -> Result<RawValue, E> {
        Ok(i64::try_from(i).map_or_else(|_| RawValue::Str(i.to_string()), RawValue::Int))
    }
    fn visit_u128<E: de::Error>(self, u: u128) -> Result<RawValue, E> {
        Ok(i64::try_from(u).map_or_else(|_| RawValue::Str(u.to_string()), RawValue::Int))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(s))
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<RawValue, E> {
        Ok(RawValue::Str(String::from_utf8_lossy(b).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Raw, Raw>()? {
            entries.push((k, v));
        }
        Ok(RawValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<str> {
        Arc::from("c.yml")
    }

    #[test]
    fn nodes_keep_their_positions() {
        let n = parse("services:\n  web:\n    image: nginx\n", &file()).unwrap();
        let image = n
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("image")
            .unwrap();
        assert_eq!(image.value, Value::Str("nginx".into()));
        assert_eq!((image.at.line, image.at.column), (3, 12));
        let (key, _) = &n.as_map().unwrap()[0];
        assert_eq!(
            (key.name.as_str(), key.at.line, key.at.column),
            ("services", 1, 1)
        );
    }

    #[test]
    fn anchors_and_merge_keys_resolve() {
        let text = "x-base: &base\n  image: a\n  user: u\nservices:\n  web:\n    <<: *base\n    image: b\n";
        let n = parse(text, &file()).unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().value, Value::Str("b".into()));
        assert_eq!(web.get("user").unwrap().value, Value::Str("u".into()));
    }

    #[test]
    fn yaml_11_words_and_leading_zeros_stay_text() {
        let n = parse("a: yes\nb: 0440\nc: 3\nd: true\ne: 1.10\n", &file()).unwrap();
        assert_eq!(n.get("e").unwrap().value, Value::Str("1.10".into()));
        assert_eq!(n.get("a").unwrap().value, Value::Str("yes".into()));
        assert_eq!(n.get("b").unwrap().value, Value::Str("0440".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Int(3));
        assert_eq!(n.get("d").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn bad_yaml_is_located() {
        let e = parse("services:\n  web: [a, b\n", &file()).unwrap_err();
        assert!(e.message.starts_with("not a valid YAML file"), "{e}");
        assert!(e.at.line >= 2, "{e}");
        let e = parse("a: 1\na: 2\n", &file()).unwrap_err();
        assert!(e.to_string().starts_with("c.yml:"), "{e}");
    }

    #[test]
    fn numeric_keys_are_text() {
        let n = parse("80: x\n", &file()).unwrap();
        assert!(n.get("80").is_some());
    }
}
