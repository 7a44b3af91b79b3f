//! Golden tests: a web + db + cache file, its StackSpec and its `stack
//! config` output compared with files under tests/golden/ (BLESS=1
//! rewrites them).

mod common;

use std::path::Path;

use common::{load_files, write};

const FILE: &str = "\
version: '3.8'
x-defaults: &defaults
  restart: unless-stopped
  labels: {team: shop}
services:
  web:
    <<: *defaults
    image: shop/web:${TAG:-1.4}
    command: gunicorn -b 0.0.0.0:8000 'shop.wsgi:application'
    environment:
      - DATABASE_URL=postgres://shop@db/shop
      - CACHE_URL=redis://cache:6379
    env_file: web.env
    ports:
      - '80:8000'
      - target: 8443
        published: 443
        mode: host
    networks: [front, back]
    configs:
      - source: nginx
        target: /etc/nginx/conf.d/shop.conf
    secrets: [db_password]
    healthcheck:
      test: [CMD-SHELL, 'curl -fs http://localhost:8000/health || exit 1']
      interval: 10s
      timeout: 2s
      retries: 3
      start_period: 1m
    stop_grace_period: 1.5s
    ulimits:
      nofile: {soft: 1024, hard: 4096}
      nproc: 512
    deploy:
      replicas: 3
      resources:
        limits: {cpus: '0.5', memory: 512M}
        reservations: {cpus: '0.25', memory: 128m}
      placement:
        constraints: [node.labels.zone != edge]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback}
      labels: {tier: frontend}
    depends_on: [db, cache]
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    volumes:
      - db-data:/var/lib/postgresql/data
      - type: tmpfs
        target: /dev/shm
        tmpfs: {size: 256m}
    secrets:
      - source: db_password
        mode: 0400
    networks: [back]
    deploy:
      placement: {constraints: [node.role == manager]}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
    user: postgres
    read_only: true
    tmpfs: /run
  cache:
    image: redis:7
    entrypoint: [redis-server]
    command: [--save, '']
    networks: [back]
    deploy: {mode: global, endpoint_mode: dnsrr}
    healthcheck:
      disable: true
    init: true
    cap_drop: [ALL]
    volumes: [/var/log/redis:/logs]
networks:
  front:
  back:
    ipam: {config: [{subnet: 10.20.0.0/24}]}
  shared:
    external: true
volumes:
  db-data:
    labels: {backup: daily}
configs:
  nginx:
    file: ./nginx.conf
secrets:
  db_password:
    file: ./db_password.txt
";

/// `actual` (with the temp dir written as $DIR) against the golden file.
fn golden(name: &str, dir: &Path, actual: &str) {
    let actual = actual.replace(&dir.display().to_string(), "$DIR");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).expect("golden file (BLESS=1 writes it)");
    assert_eq!(actual, expected, "{name} differs (BLESS=1 rewrites it)");
}

#[test]
fn web_db_cache() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "compose.yml", FILE);
    write(
        dir.path(),
        "web.env",
        "# web settings\nWORKERS=4\nCACHE_URL=overridden-by-environment\n",
    );
    write(dir.path(), "nginx.conf", "server { listen 80; }\n");
    write(dir.path(), "db_password.txt", "s3cret");
    let project = load_files(&[file], &[("HOME", "/home/u")]).unwrap();

    let warnings: Vec<String> = project.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(
        warnings,
        [
            "`depends_on` of service web is ignored: services start together; readiness comes from healthchecks"
        ]
    );
    let spec = project.to_stack_spec("shop").unwrap();
    let json = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    golden("web-db-cache.spec.json", dir.path(), &json);
    golden("web-db-cache.config.yml", dir.path(), &project.render());

    // The points of the brief, spelt out beside the golden file.
    let web = spec.services.iter().find(|s| s.name == "shop_web").unwrap();
    assert_eq!(
        web.args,
        ["gunicorn", "-b", "0.0.0.0:8000", "shop.wsgi:application"]
    );
    assert!(web.env.contains(&"WORKERS=4".to_string()));
    assert!(
        web.env
            .contains(&"CACHE_URL=redis://cache:6379".to_string()),
        "environment wins over env_file"
    );
    assert_eq!(web.networks, ["shop_front", "shop_back"]);
    assert_eq!(web.secrets[0].target, "db_password");
    assert_eq!(web.configs[0].config_name, "shop_nginx");
    assert_eq!(web.stop_grace_seconds, 2, "1.5s rounds up");
    assert_eq!(
        web.labels.get("com.docker.stack.image").unwrap(),
        "shop/web:1.4"
    );
    let shared = spec.networks.iter().find(|n| n.name == "shared").unwrap();
    assert!(shared.external && shared.labels.is_empty());
    let db = spec.services.iter().find(|s| s.name == "shop_db").unwrap();
    assert_eq!(db.secrets[0].mode, 0o400);
    assert_eq!(db.mounts[0].source, "shop_db-data");
    assert_eq!(
        db.mounts[0]
            .volume_labels
            .get("com.docker.stack.namespace")
            .unwrap(),
        "shop"
    );
}

/// dockersamples/example-voting-app's docker-stack.yml, as Docker deploys it.
#[test]
fn the_voting_app_stack() {
    use berth_proto::v1::service_spec::Mode;
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/example-voting-app-docker-stack.yml");
    let project = load_files(&[file], &[]).unwrap();
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
    let spec = project.to_stack_spec("vote").unwrap();
    let names: Vec<_> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vote_db",
            "vote_redis",
            "vote_result",
            "vote_vote",
            "vote_worker"
        ]
    );
    let networks: Vec<_> = spec.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        networks,
        ["vote_backend", "vote_frontend"],
        "no service needs the default network"
    );
    let worker = &spec.services[4];
    assert_eq!(worker.networks, ["vote_frontend", "vote_backend"]);
    assert!(matches!(worker.mode, Some(Mode::Replicated(ref r)) if r.replicas == 2));
    let vote = &spec.services[3];
    assert_eq!(
        (vote.ports[0].published_port, vote.ports[0].target_port),
        (8080, 80)
    );
    let db = &spec.services[0];
    assert_eq!(
        db.env,
        ["POSTGRES_PASSWORD=postgres", "POSTGRES_USER=postgres"]
    );
    assert_eq!(db.mounts[0].source, "vote_db-data");
    assert_eq!(spec.volumes[0].name, "vote_db-data");
}
