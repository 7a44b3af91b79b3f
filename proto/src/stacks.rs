//! What the CLI and the controller agree on about stacks (#15).

use std::collections::BTreeMap;

/// The label every object of a stack carries; its value is the stack's name.
/// Docker's name, so scripts that filter on it keep working.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// The label a stack service carries with its image as the file wrote it
/// (Docker's `com.docker.stack.image`).
pub const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

/// The stack an object belongs to, from its labels.
pub fn stack_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(STACK_LABEL).map(String::as_str)
}

/// The name an object of stack `stack` gets from its key in the file
/// (`demo` + `web` = `demo_web`), unless the file gave a `name:`.
pub fn scoped_name(stack: &str, key: &str) -> String {
    format!("{stack}_{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert_eq!(scoped_name("demo", "web"), "demo_web");
        let mut labels = BTreeMap::new();
        assert_eq!(stack_of(&labels), None);
        labels.insert(STACK_LABEL.to_string(), "demo".to_string());
        assert_eq!(stack_of(&labels), Some("demo"));
    }
}
