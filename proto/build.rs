include!("../build/git_commit.rs");

const PROTOS: &[&str] = &[
    "proto/berth/v1/objects.proto",
    "proto/berth/v1/cluster.proto",
    "proto/berth/v1/dispatcher.proto",
    "proto/berth/v1/raft.proto",
    "proto/berth/v1/certificates.proto",
    "proto/berth/v1/volumes.proto",
    "proto/berth/v1/images.proto",
    "proto/berth/v1/system.proto",
    "proto/berth/v1/tasks.proto",
    "proto/berth/v1/exec.proto",
    "proto/berth/v1/stacks.proto",
    "proto/berth/v1/events.proto",
    "proto/berth/v1/cluster_settings.proto",
    "proto/berth/v1/recovery.proto",
    "proto/berth/store/store.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    emit_git_commit();
    // protoc comes from a crate, never from the system.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Ordered maps: deterministic encoding (the state machine hashes nothing, but
    // stable JSON output and snapshot dumps are easier to compare).
    config.btree_map(["."]);
    // The overlay's address message is the hand-written type of `net`: one Rust
    // type on the wire and in code, written "A.B.C.D/N" in JSON.
    config.extern_path(".berth.v1.Ipv4Prefix", "crate::net::Ipv4Prefix");
    // The assignments' shared part, encoded once on the leader and handed to
    // every session by reference (dispatcher.md, "One encoding for all").
    const SHARED_BYTES: [&str; 2] = [
        ".berth.v1.Assignments.shared",
        ".berth.v1.AssignmentsDelta.shared_changes",
    ];
    config.bytes(SHARED_BYTES);
    // A stored object or watch event is as large as its largest kind: inline,
    // a service (2.3 KB) made every task operation 2.3 KB before its heap
    // data, and a round's operation lists (20,000 task creates, placements
    // and addresses) the leader's largest holder while a cluster converged.
    // Boxed, the two large kinds take their own size and the rest a pointer.
    for kind in [
        ".berth.store.Object.kind.service",
        ".berth.store.Object.kind.task",
        ".berth.v1.WatchEvent.object.service",
        ".berth.v1.WatchEvent.object.task",
    ] {
        config.boxed(kind);
    }
    // Messages that carry a secret in clear (or the key that seals secrets, or
    // the CA key and join secrets): their Debug is written by hand in
    // src/redact.rs and prints no value, so no `{:?}` of them, or of a message
    // holding them, can log one.
    config.skip_debug([
        ".berth.store.ClusterPki",
        ".berth.v1.SecretValue",
        ".berth.v1.CreateSecretRequest",
        ".berth.v1.JoinResponse",
        ".berth.v1.UnlockControllerRequest",
        ".berth.v1.PullCredentials",
        ".berth.v1.StackSecret",
        ".berth.v1.ClusterBackup",
        ".berth.v1.BackupChunk",
    ]);
    tonic_prost_build::configure()
        // The generated types are the one model: stack files and `--format json`
        // (de)serialize them directly.
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        // Wire-only bytes: an unpacked set has none (bytes::Bytes has no serde).
        .field_attribute(SHARED_BYTES[0], "#[serde(skip)]")
        .field_attribute(SHARED_BYTES[1], "#[serde(skip)]")
        .compile_with_config(config, PROTOS, &["proto"])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
