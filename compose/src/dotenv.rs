//! `KEY=VALUE` files: `.env` beside the first Compose file and `env_file`.
//! Blank lines and `# comments` are skipped, `export ` in front is allowed,
//! a value in matching quotes loses them, and a line with a bare `KEY` takes
//! the value from the environment (as docker does for env files).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotenvError {
    #[error("line {line}: {key:?} is not a variable name")]
    BadKey { line: usize, key: String },
}

/// One variable: its name, its value (None: a bare `KEY`), and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Option<String>,
    pub line: usize,
}

pub fn parse(text: &str) -> Result<Vec<Entry>, DotenvError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v))),
            None => (line.trim(), None),
        };
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(DotenvError::BadKey {
                line: i + 1,
                key: key.to_string(),
            });
        }
        out.push(Entry {
            key: key.to_string(),
            value,
            line: i + 1,
        });
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    let t = v.trim();
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_string();
        }
    }
    // An unquoted value keeps its text up to a " #" comment.
    match t.find(" #") {
        Some(i) => t[..i].trim_end().to_string(),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes_and_bare_keys() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE=v # note\nF\nG=\n";
        let entries = parse(text).unwrap();
        let pairs: Vec<(&str, Option<&str>)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("A", Some("1")),
                ("B", Some("two words")),
                ("C", Some("quoted # not a comment")),
                ("D", Some("x")),
                ("E", Some("v")),
                ("F", None),
                ("G", Some("")),
            ]
        );
        assert_eq!(entries[1].line, 4);
    }

    #[test]
    fn a_bad_key_names_its_line() {
        assert_eq!(
            parse("A=1\nNOT A KEY\n").unwrap_err(),
            DotenvError::BadKey {
                line: 2,
                key: "NOT A KEY".into()
            }
        );
    }
}
