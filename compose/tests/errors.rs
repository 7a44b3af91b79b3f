//! Bad files give every error, each at FILE:LINE:COLUMN with what was expected.

mod common;

use common::load_text;

fn errors(text: &str) -> Vec<String> {
    let (_dir, result) = load_text(text);
    let errors = result.expect_err("the file should be refused");
    errors
        .0
        .iter()
        .map(|e| format!("{}:{}: {}", e.at.line, e.at.column, e.message))
        .collect()
}

#[test]
fn every_error_is_located_and_says_what_was_expected() {
    let text = "\
services:
  web:
    image: nginx
    imgae: x
    stop_grace_period: forever
    ports: ['80:99999']
    deploy:
      replicas: many
      mode: sideways
      resources:
        limits:
          memory: lots
";
    let e = errors(text);
    assert_eq!(e.len(), 6, "{e:#?}");
    assert!(
        e[0].starts_with("4:5: unknown key `imgae` in service web: did you mean `image`?"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("5:24: service web: stop_grace_period: expected a duration like 1h2m3s"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("6:13: service web: ports: port \"80:99999\": port 99999 is out of range"),
        "{}",
        e[2]
    );
    assert_eq!(
        e[3],
        "8:17: service web deploy: replicas: expected a whole number, found \"many\""
    );
    assert!(
        e[4].starts_with("9:13: service web deploy: mode: expected replicated or global"),
        "{}",
        e[4]
    );
    assert!(
        e[5].starts_with("12:19: service web deploy: resources.limits.memory: expected a size"),
        "{}",
        e[5]
    );
}

#[test]
fn the_display_is_file_line_column() {
    let (_dir, result) = load_text("services:\n  web:\n    image: a\n    deploy: {replicas: x}\n");
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("compose.yml:4:24: service web deploy: replicas: expected a whole number"),
        "{text}"
    );
}

#[test]
fn jobs_say_to_use_berth_run() {
    let e = errors("services:\n  once:\n    image: a\n    deploy: {mode: replicated-job}\n");
    assert!(
        e[0].contains("berth has no jobs") && e[0].contains("berth run"),
        "{e:?}"
    );
}

#[test]
fn not_yaml_and_not_a_mapping() {
    let e = errors("services: [\n");
    assert!(e[0].contains("not a valid YAML file"), "{e:?}");
    let e = errors("- a\n- b\n");
    assert!(e[0].starts_with("1:1: expected a mapping"), "{e:?}");
    let e = errors("services:\n  web: 3\n");
    assert!(
        e[0].contains("service web: expected a mapping, found a number"),
        "{e:?}"
    );
}

#[test]
fn undeclared_names_and_unknown_drivers() {
    let e = errors(
        "services:\n  web:\n    image: a\n    networks: [front]\n    volumes: ['data:/d']\n    secrets: [pw]\nnetworks:\n  back: {driver: bridge}\n",
    );
    let all = e.join("\n");
    assert!(
        all.contains("uses network \"front\", which is not declared"),
        "{all}"
    );
    assert!(all.contains("uses volume \"data\""), "{all}");
    assert!(all.contains("uses secret \"pw\""), "{all}");
    assert!(all.contains("driver \"bridge\" is not supported"), "{all}");
}

#[test]
fn a_required_variable_fails_with_its_message() {
    let e = errors("services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image to deploy}\n");
    assert_eq!(
        e,
        ["3:12: required variable IMAGE is missing a value: set IMAGE to the image to deploy"]
    );
}

#[test]
fn a_service_without_image_names_build() {
    let e = errors("services:\n  web:\n    build: .\n");
    assert!(
        e[0].contains("has no image") && e[0].contains("build and push it"),
        "{e:?}"
    );
}

#[test]
fn bad_values_never_panic() {
    for text in [
        "services:\n  w:\n    image: a\n    ports: [{}]\n",
        "services:\n  w:\n    image: a\n    volumes: [{type: bind}]\n",
        "services:\n  w:\n    image: a\n    healthcheck: {test: []}\n",
        "services:\n  w:\n    image: a\n    ulimits: {nofile: {soft: 1}}\n",
        "services:\n  w:\n    image: a\n    command: \"a 'b\"\n",
        "services: ~\nnetworks: 3\n",
        "configs:\n  c: {}\n",
        "a: &a [*a]\n",
    ] {
        let (_dir, result) = load_text(text);
        if let Err(e) = result {
            assert!(e.0.iter().all(|e| e.at.line >= 1), "{e}");
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    for n in [40, 100, 1000, 100_000] {
        let deep = format!("services: {}{}\n", "[".repeat(n), "]".repeat(n));
        let (_dir, result) = load_text(&deep);
        let e = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("collections nest deeper than 32 levels"), "{e}");
    }
    let deep_maps = format!("a: {}1{}\n", "{b: ".repeat(5_000), "}".repeat(5_000));
    let (_dir, result) = load_text(&deep_maps);
    assert!(result.is_err());
}

mod never_panics {
    use proptest::prelude::*;

    use super::load_text;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn on_any_text(text in ".{0,200}") {
            let (_dir, _result) = load_text(&text);
        }

        #[test]
        fn on_yaml_like_text(text in "(services|web|image|deploy|replicas|ports|x-a|<<|&a|\\*a|\\$\\{A:-b\\}|: |- |\n  |\n|\\[|\\]|\\{|\\}|,|'|\"|80:80|3){0,60}") {
            let (_dir, _result) = load_text(&text);
        }
    }
}
