//! Two files merged, a .env beside the first, relative paths from the first
//! file's directory.

mod common;

use berth_proto::v1::mount::Kind;

use common::{load_files, write};

#[test]
fn two_files_and_a_dot_env() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "app/compose.yml",
        "\
services:
  web:
    image: web:${TAG}
    environment:
      MODE: ${MODE:-dev}
      FROM_SHELL: ${SHELL_ONLY}
      BARE:
    ports: ['8080:80']
    volumes: ['./static:/srv:ro']
    secrets: [pw]
secrets:
  pw:
    file: ./pw.txt
",
    );
    write(
        dir.path(),
        "app/.env",
        "TAG=1.0\nMODE=prod\nSHELL_ONLY=from-dotenv\n",
    );
    write(dir.path(), "app/pw.txt", "hunter2");
    let over = write(
        dir.path(),
        "override/prod.yml",
        "\
services:
  web:
    ports: ['8080:81', '9090:90']
    deploy: {replicas: 3}
",
    );
    let project = load_files(
        &[base, over],
        &[("SHELL_ONLY", "from-shell"), ("BARE", "b")],
    )
    .unwrap();
    let spec = project.to_stack_spec("demo").unwrap();
    let web = &spec.services[0];
    assert_eq!(web.name, "demo_web");
    assert_eq!(web.image, "web:1.0", ".env gives TAG");
    assert_eq!(
        web.env,
        ["BARE=b", "FROM_SHELL=from-shell", "MODE=prod"],
        "the shell wins over .env"
    );
    let ports: Vec<_> = web
        .ports
        .iter()
        .map(|p| (p.published_port, p.target_port))
        .collect();
    assert_eq!(
        ports,
        [(8080, 81), (9090, 90)],
        "the later file replaces port 8080"
    );
    assert!(
        matches!(web.mode, Some(berth_proto::v1::service_spec::Mode::Replicated(ref r)) if r.replicas == 3)
    );
    let bind = &web.mounts[0];
    assert_eq!(bind.kind, Kind::Bind as i32);
    assert_eq!(
        bind.source,
        dir.path().join("app/static").display().to_string(),
        "relative to the first file"
    );
    assert!(bind.read_only);
    assert_eq!(spec.secrets[0].data, b"hunter2");
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
}

#[test]
fn unset_variables_warn_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.yml",
        "services:\n  web:\n    image: web:${NOPE}\n",
    );
    let project = load_files(&[file], &[]).unwrap();
    let w: Vec<String> = project.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].ends_with("c.yml:3:12: variable NOPE is not set: it is empty here"),
        "{w:?}"
    );
}

#[test]
fn an_error_in_the_second_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yml", "services:\n  web:\n    image: a\n");
    let b = write(
        dir.path(),
        "b.yml",
        "services:\n  web:\n    deploy:\n      replicas: lots\n",
    );
    let e = load_files(&[a, b], &[]).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(
        e.0[0].at.file.ends_with("b.yml") && e.0[0].at.line == 4,
        "{e}"
    );
}

#[test]
fn a_missing_secret_file_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.yml",
        "services:\n  web:\n    image: a\n    secrets: [pw]\nsecrets:\n  pw: {file: ./missing.txt}\n",
    );
    let project = load_files(&[file], &[]).unwrap();
    let e = project.to_stack_spec("s").unwrap_err().to_string();
    assert!(
        e.contains("c.yml:6:14: secret pw: cannot read") && e.contains("missing.txt"),
        "{e}"
    );
}
