//! Bad input to controllers: clear errors that name the problem, nothing written.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use berth_proto::v1::{CreateConfigRequest, GetConfigRequest};
use berth_testhost::controllers::{self, Controllers};
use berth_testhost::{TestNet, bin_path};

/// Runs a controller on h1 that is expected to refuse to start; returns its log.
fn refused_start(net: &mut TestNet, name: &str, args: &[&str]) -> Result<String> {
    let proc = net
        .host_mut(0)
        .spawn(name, bin_path("berth-controller"), args)?;
    let status = proc.wait_exit(Duration::from_secs(10))?;
    assert!(!status.success(), "the controller started: {}", proc.log());
    Ok(proc.log())
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn data_dirs_that_are_not_ours_are_refused_untouched() -> Result<()> {
    let mut net = TestNet::new("bad_data_dirs", 1)?;
    let base = net.host(0).dir().to_path_buf();
    let listen = format!("{}:7400", net.host(0).address());

    // A directory with someone else's files.
    let foreign = base.join("foreign");
    std::fs::create_dir_all(&foreign)?;
    std::fs::write(foreign.join("important.txt"), "keep me")?;
    let log = refused_start(
        &mut net,
        "foreign",
        &[
            "--data-dir",
            foreign.to_str().unwrap_or_default(),
            "--listen",
            &listen,
            "--init",
        ],
    )?;
    assert!(log.contains("is not a berth controller data dir"), "{log}");
    assert!(log.contains("important.txt"), "{log}");
    assert_eq!(entries(&foreign), vec!["important.txt".to_string()]);

    // An empty dir and neither --init nor --join.
    let empty = base.join("empty");
    let log = refused_start(
        &mut net,
        "empty",
        &[
            "--data-dir",
            empty.to_str().unwrap_or_default(),
            "--listen",
            &listen,
        ],
    )?;
    assert!(log.contains("start with --init"), "{log}");
    assert!(entries(&empty).is_empty());

    // A marker that is not JSON.
    let corrupt = base.join("corrupt");
    std::fs::create_dir_all(corrupt.join("db"))?;
    std::fs::write(corrupt.join("berth-controller.json"), "{not json")?;
    let log = refused_start(
        &mut net,
        "corrupt",
        &[
            "--data-dir",
            corrupt.to_str().unwrap_or_default(),
            "--listen",
            &listen,
        ],
    )?;
    assert!(log.contains("is corrupt"), "{log}");
    assert!(log.contains("berth-controller.json"), "{log}");

    // A marker whose database belongs to another cluster (a mixed-up copy).
    let good = base.join("good");
    let ctl = net.host_mut(0).spawn(
        "good",
        bin_path("berth-controller"),
        &[
            "--data-dir",
            good.to_str().unwrap_or_default(),
            "--listen",
            &listen,
            "--init",
        ],
    )?;
    berth_testhost::wait_until("the good controller", Duration::from_secs(10), || {
        good.join("berth-controller.json").exists().then_some(())
    })?;
    std::thread::sleep(Duration::from_millis(300));
    ctl.kill9()?;
    let marker = std::fs::read_to_string(good.join("berth-controller.json"))?;
    let mut value: serde_json::Value = serde_json::from_str(&marker)?;
    value["cluster_id"] = serde_json::Value::String("0123456789abcdef".into());
    std::fs::write(good.join("berth-controller.json"), value.to_string())?;
    let log = refused_start(
        &mut net,
        "mixed",
        &[
            "--data-dir",
            good.to_str().unwrap_or_default(),
            "--listen",
            &listen,
        ],
    )?;
    assert!(log.contains("belongs to cluster"), "{log}");
    Ok(())
}

#[test]
fn a_join_to_a_wrong_address_fails_clearly_and_writes_nothing() -> Result<()> {
    let mut net = TestNet::new("bad_join", 2)?;
    let dir = net.host(0).dir().join("controller");
    let listen = format!("{}:7400", net.host(0).address());
    // Nothing listens on h2.
    let wrong = format!("{}:7400", net.host(1).address());
    let log = refused_start(
        &mut net,
        "joiner",
        &[
            "--data-dir",
            dir.to_str().unwrap_or_default(),
            "--listen",
            &listen,
            "--join",
            &wrong,
            "--token",
            "BERTH-1-0000000000000000000000000000000000000000000000000000000000000000-00000000000000000000000000000000",
        ],
    )?;
    assert!(
        log.contains(&format!("cannot join through {wrong}")),
        "{log}"
    );
    assert!(
        entries(&dir).is_empty(),
        "a failed join wrote {:?}",
        entries(&dir)
    );
    Ok(())
}

#[test]
fn a_second_member_with_a_used_address_is_refused() -> Result<()> {
    // Three members: with h2 gone the other two keep a quorum, which issuing
    // h2's new certificate needs.
    let mut c = Controllers::start("duplicate_member", 3)?;
    // h2 loses its data dir but was never removed: its address is still a member.
    c.wipe(1)?;
    c.spawn(1, Some(0))?;
    let proc = c.proc(1)?;
    let status = proc.wait_exit(Duration::from_secs(15))?;
    assert!(!status.success());
    let log = proc.log();
    assert!(log.contains("already belongs to member"), "{log}");
    assert!(log.contains("berth cluster remove"), "{log}");
    Ok(())
}

#[test]
fn oversized_requests_and_unknown_objects_get_clear_errors() -> Result<()> {
    let c = Controllers::start("bad_requests", 1)?;
    let addr = c.address(0);
    let security = c.security();
    c.run(async move {
        let mut client = controllers::connect(&addr, &security).await?;
        // Over the store's transaction limit.
        let err = client
            .create_config(CreateConfigRequest {
                name: "big".into(),
                data: vec![b'x'; 2 * 1024 * 1024],
                labels: Default::default(),
            })
            .await
            .expect_err("a 2 MiB config must be refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("limit"), "{}", err.message());
        // Over the API's message limit.
        let err = client
            .create_config(CreateConfigRequest {
                name: "huge".into(),
                data: vec![b'x'; 6 * 1024 * 1024],
                labels: Default::default(),
            })
            .await
            .expect_err("a 6 MiB request must be refused");
        assert!(
            err.message().contains("message length too large")
                || err.message().contains("too large"),
            "{}",
            err.message()
        );
        // Nothing was stored by either.
        for name in ["big", "huge"] {
            let err = client
                .get_config(GetConfigRequest {
                    config: name.into(),
                    stale: false,
                })
                .await
                .expect_err("nothing stored");
            assert_eq!(err.code(), tonic::Code::NotFound);
        }
        let err = client
            .get_config(GetConfigRequest {
                config: "nope".into(),
                stale: false,
            })
            .await
            .expect_err("unknown config");
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(
            err.message().contains("\"nope\" not found"),
            "{}",
            err.message()
        );
        // A bad name is refused with the rule it broke.
        let err = client
            .create_config(CreateConfigRequest {
                name: "Bad Name!".into(),
                data: vec![],
                labels: Default::default(),
            })
            .await
            .expect_err("bad name");
        assert!(
            err.message().contains("invalid config name"),
            "{}",
            err.message()
        );
        anyhow::Ok(())
    })
}
