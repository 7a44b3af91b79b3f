//! Variable interpolation in values, as the Compose spec writes it: `$VAR`,
//! `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+alt}` /
//! `${VAR+alt}`, and `$$` for a literal `$`. Defaults and messages may hold
//! variables themselves (`${A:-${B:-c}}`). A plain function of the text and
//! a lookup, so it is tested on its own.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
    #[error("required variable {name} is missing a value")]
    RequiredNoMessage { name: String },
    #[error("invalid interpolation in {text:?}: {why} (write $$ for a literal $)")]
    Syntax { text: String, why: &'static str },
}

/// The text with every variable replaced, and the variables that were used
/// without a value (they became empty; the caller warns about them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interpolated {
    pub text: String,
    pub unset: Vec<String>,
}

/// Replaces the variables in `text`; `lookup` gives a variable's value (None:
/// unset).
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolateError> {
    let mut out = Interpolated::default();
    expand(text, lookup, &mut out)?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
) -> Result<(), InterpolateError> {
    let syntax = |why| InterpolateError::Syntax {
        text: text.to_string(),
        why,
    };
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.chars().next() {
            Some('$') => {
                out.text.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_len =
                    braced_len(&after[1..]).ok_or_else(|| syntax("a '${' without its '}'"))?;
                let body = &after[1..1 + body_len];
                braced(body, lookup, out, &syntax)?;
                rest = &after[1 + body_len + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                substitute(&after[..len], lookup, out);
                rest = &after[len..];
            }
            _ => return Err(syntax("a '$' not followed by a name or '{'")),
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// The length of a `${...}` body up to its matching `}` (nested `${` count).
fn braced_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn substitute(name: &str, lookup: &dyn Fn(&str) -> Option<String>, out: &mut Interpolated) {
    match lookup(name) {
        Some(value) => out.text.push_str(&value),
        None => {
            if !out.unset.iter().any(|n| n == name) {
                out.unset.push(name.to_string());
            }
        }
    }
}

fn braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
    syntax: &dyn Fn(&'static str) -> InterpolateError,
) -> Result<(), InterpolateError> {
    let name_len = body.find(|c| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_len];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(syntax("a '${' not followed by a variable name"));
    }
    let op = &body[name_len..];
    if op.is_empty() {
        substitute(name, lookup, out);
        return Ok(());
    }
    let value = lookup(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    // ":" tests for unset or empty, no ":" for unset only.
    let missing = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    let mut chars = op.chars();
    let kind = chars.next();
    let arg = chars.as_str();
    match kind {
        Some('-') => {
            if missing {
                expand(arg, lookup, out)?;
            } else if let Some(v) = value {
                out.text.push_str(&v);
            }
        }
        Some('+') => {
            if !missing {
                expand(arg, lookup, out)?;
            }
        }
        Some('?') => {
            if missing {
                let mut message = Interpolated::default();
                expand(arg, lookup, &mut message)?;
                return Err(if message.text.is_empty() {
                    InterpolateError::RequiredNoMessage {
                        name: name.to_string(),
                    }
                } else {
                    InterpolateError::Required {
                        name: name.to_string(),
                        message: message.text,
                    }
                });
            } else if let Some(v) = value {
                out.text.push_str(&v);
            }
        }
        _ => {
            return Err(syntax(
                "expected '}', ':-', '-', ':?', '?', ':+' or '+' after the name",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(text: &str, vars: &BTreeMap<String, String>) -> Result<Interpolated, InterpolateError> {
        interpolate(text, &|n| vars.get(n).cloned())
    }

    fn text(t: &str, vars: &[(&str, &str)]) -> String {
        run(t, &env(vars)).unwrap().text
    }

    #[test]
    fn the_forms_of_the_spec() {
        let vars = [("A", "a"), ("E", ""), ("PORT", "80")];
        assert_eq!(text("$A-${A}", &vars), "a-a");
        assert_eq!(text("x${PORT}y", &vars), "x80y");
        assert_eq!(text("${E:-d}|${E-d}|${U:-d}|${U-d}", &vars), "d||d|d");
        assert_eq!(text("${A:-d}", &vars), "a");
        assert_eq!(
            text("${A:+alt}|${E:+alt}|${E+alt}|${U+alt}", &vars),
            "alt||alt|"
        );
        assert_eq!(text("$$A and $${A}", &vars), "$A and ${A}");
        assert_eq!(text("${U:-${A}}|${U:-${V:-deep}}", &vars), "a|deep");
        assert_eq!(text("${U:-a:b/c}", &vars), "a:b/c");
        assert_eq!(text("$A.b", &vars), "a.b");
    }

    #[test]
    fn unset_variables_become_empty_and_are_named() {
        let out = run("${X}-$Y-${X}", &env(&[])).unwrap();
        assert_eq!(out.text, "--");
        assert_eq!(out.unset, vec!["X".to_string(), "Y".to_string()]);
        assert!(run("${X:-d}", &env(&[])).unwrap().unset.is_empty());
    }

    #[test]
    fn required_variables_fail_with_the_message() {
        let e = run("${DB:?set DB first}", &env(&[("DB", "")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "required variable DB is missing a value: set DB first"
        );
        assert!(
            run("${DB?m}", &env(&[("DB", "")])).is_ok(),
            "set but empty passes '?'"
        );
        assert!(matches!(
            run("${DB?}", &env(&[])).unwrap_err(),
            InterpolateError::RequiredNoMessage { .. }
        ));
    }

    #[test]
    fn bad_syntax_is_an_error() {
        for bad in ["${A", "${}", "${1}", "$1", "a $ b", "$", "${A*}"] {
            assert!(run(bad, &env(&[])).is_err(), "{bad:?}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Z_][A-Z0-9_]{0,8}"
    }

    proptest! {
        #[test]
        fn text_without_dollar_is_unchanged(s in "[^$]*") {
            prop_assert_eq!(run(&s, &env(&[])).unwrap().text, s);
        }

        #[test]
        fn doubled_dollars_yield_the_text(s in ".*") {
            let escaped = s.replace('$', "$$");
            prop_assert_eq!(run(&escaped, &env(&[])).unwrap().text, s);
        }

        #[test]
        fn a_set_variable_replaces_exactly(n in name(), v in ".*", pre in "[^$]*", post in "[^$a-zA-Z0-9_]*") {
            let vars = env(&[(&n, &v)]);
            let braced = run(&format!("{pre}${{{n}}}{post}"), &vars).unwrap();
            prop_assert_eq!(braced.text, format!("{pre}{v}{post}"));
            let bare = run(&format!("{pre}${n}{post}"), &vars).unwrap();
            prop_assert_eq!(bare.text, format!("{pre}{v}{post}"));
        }

        #[test]
        fn defaults_apply_exactly_when_unset_or_empty(
            n in name(), v in proptest::option::of(".*"), d in "[^$}]*"
        ) {
            let vars = match &v { Some(v) => env(&[(&n, v)]), None => env(&[]) };
            let colon = run(&format!("${{{n}:-{d}}}"), &vars).unwrap().text;
            let plain = run(&format!("${{{n}-{d}}}"), &vars).unwrap().text;
            match v.as_deref() {
                None => { prop_assert_eq!(&colon, &d); prop_assert_eq!(&plain, &d); }
                Some("") => { prop_assert_eq!(&colon, &d); prop_assert_eq!(plain, ""); }
                Some(v) => { prop_assert_eq!(colon, v); prop_assert_eq!(plain, v); }
            }
        }

        #[test]
        fn never_panics(s in ".*") {
            let _ = run(&s, &env(&[("A", "$B"), ("B", "x")]));
        }
    }
}
