//! Tests of the test-host harness itself (run as root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_testhost::{Cut, TestNet, cgroups, wait_until};

const PORT: u16 = 7000;

/// Binds a TCP echo server on `host` that answers every connection once.
fn echo_server(net: &TestNet, host: usize) -> Result<SocketAddr> {
    let addr = SocketAddr::new(net.host(host).address().into(), PORT);
    let listener = net.host(host).net(move || TcpListener::bind(addr))??;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 64];
            if let Ok(n) = stream.read(&mut buf) {
                let _ = stream.write_all(&buf[..n]);
            }
        }
    });
    Ok(addr)
}

/// Connects from `host` to `addr`, sends a line and returns the echo.
fn talk(net: &TestNet, host: usize, addr: SocketAddr) -> Result<String> {
    net.host(host).net(move || -> Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(700))
            .with_context(|| format!("failed to connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(700)))?;
        stream.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).to_string())
    })?
}

/// Talks until it works: a fresh link may lose the first SYN, whose retry comes
/// after `talk`'s timeout (seen on a loaded 2-core machine).
fn talk_eventually(net: &TestNet, host: usize, addr: SocketAddr) -> Result<String> {
    wait_until(
        &format!("host {host} to talk to {addr}"),
        Duration::from_secs(10),
        || talk(net, host, addr).ok(),
    )
}

/// Lines the test shell printed on its own (the log's header lines echo its script).
fn started_count(log: &str) -> usize {
    log.lines().filter(|l| *l == "started").count()
}

#[test]
fn two_hosts_talk_and_a_cut_host_cannot_until_healed() -> Result<()> {
    let net = TestNet::new("talk_cut_heal", 2)?;
    let server = echo_server(&net, 1)?;
    assert_eq!(talk_eventually(&net, 0, server)?, "ping");

    net.host(1).cut(Cut::Both)?;
    let err = talk(&net, 0, server).expect_err("a cut host must not answer");
    assert!(format!("{err:#}").contains("failed to connect"), "{err:#}");

    net.host(1).heal()?;
    assert_eq!(talk_eventually(&net, 0, server)?, "ping");
    Ok(())
}

#[test]
fn a_one_way_cut_drops_only_one_direction() -> Result<()> {
    let net = TestNet::new("one_way_cut", 2)?;
    let a = SocketAddr::new(net.host(0).address().into(), 7001);
    let b = SocketAddr::new(net.host(1).address().into(), 7001);
    let sock_a = net.host(0).net(move || UdpSocket::bind(a))??;
    let sock_b = net.host(1).net(move || UdpSocket::bind(b))??;
    for s in [&sock_a, &sock_b] {
        s.set_read_timeout(Some(Duration::from_millis(400)))?;
    }
    let mut buf = [0u8; 16];

    // h2 cut inbound: what h1 sends is lost, what h2 sends arrives.
    net.host(1).cut(Cut::Inbound)?;
    sock_a.send_to(b"to-b", b)?;
    assert!(
        sock_b.recv_from(&mut buf).is_err(),
        "inbound cut let a packet in"
    );
    sock_b.send_to(b"to-a", a)?;
    let (n, _) = sock_a.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"to-a");

    // Reversed: h2 cut outbound.
    net.host(1).cut(Cut::Outbound)?;
    sock_b.send_to(b"to-a", a)?;
    assert!(
        sock_a.recv_from(&mut buf).is_err(),
        "outbound cut let a packet out"
    );
    sock_a.send_to(b"to-b", b)?;
    let (n, _) = sock_b.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"to-b");

    net.host(1).heal()?;
    sock_b.send_to(b"healed", a)?;
    let (n, _) = sock_a.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"healed");
    Ok(())
}

#[test]
fn processes_run_inside_their_host_and_can_be_killed_paused_and_restarted() -> Result<()> {
    let mut net = TestNet::new("procs", 2)?;
    let marker = format!("/run/{}-marker", net.name());
    let script = format!("touch {marker}; ip -o -4 addr show dev eth0; echo started; sleep 60");
    let host = net.host_mut(0);
    let proc = host.spawn("shell", "/bin/sh", &["-c", &script])?;
    wait_until("the shell to start", Duration::from_secs(5), || {
        started_count(&proc.log()).ge(&1).then_some(())
    })?;
    // Its network is the host's, its /run is the host's own.
    assert!(proc.log().contains("198.18.0.1/15"), "{}", proc.log());
    assert!(
        !Path::new(&marker).exists(),
        "a host's /run leaked onto the machine"
    );
    let seen_by_h2 = net.host(1).run_unchecked("test", &["-e", &marker])?;
    assert!(!seen_by_h2.status.success(), "h2 sees h1's /run");
    assert!(net.host(0).run("test", &["-e", &marker]).is_ok());

    let proc = net.host_mut(0).proc("shell")?;
    proc.pause()?;
    let pid = proc.pid().context("running")?;
    // SIGSTOP is delivered asynchronously: the process shows "T" (stopped)
    // once it has been scheduled to take the signal.
    let stat = format!("/proc/{pid}/stat");
    wait_until(
        "the paused process to be stopped",
        Duration::from_secs(5),
        || {
            let state = std::fs::read_to_string(&stat).ok()?;
            (state.split_whitespace().nth(2) == Some("T")).then_some(())
        },
    )?;
    proc.resume()?;
    proc.kill9()?;
    assert!(!proc.is_running());
    proc.restart()?;
    wait_until("the restarted shell", Duration::from_secs(5), || {
        (started_count(&proc.log()) == 2).then_some(())
    })?;
    assert!(proc.is_running());
    Ok(())
}

#[test]
fn cgroups_and_namespaces_are_gone_after_the_test_also_after_a_panic() -> Result<()> {
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut net = TestNet::new("cleanup", 1).expect("testnet");
        // A process inside a cgroup of the test, as a container would be.
        let root = cgroups::hierarchies()
            .into_iter()
            .find(|h| h.join("cgroup.procs").exists())
            .expect("a cgroup hierarchy");
        let dir = root.join(net.cgroup_parent()).join("c1");
        std::fs::create_dir_all(&dir).expect("mkdir cgroup");
        let holder = net.host(0).holder_pid();
        let proc = net
            .host_mut(0)
            .spawn("sleeper", "/bin/sleep", &["60"])
            .expect("spawn");
        let pid = proc.pid().expect("pid");
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("join cgroup");
        *seen.lock().expect("lock") = Some((net.name().to_string(), dir, [pid, holder]));
        panic!("deliberate panic with a live test network");
    }));
    assert!(result.is_err());
    let (name, dir, pids) = seen.into_inner().expect("lock").context("closure ran")?;

    assert!(!dir.exists(), "{} survived the panic", dir.display());
    for root in cgroups::hierarchies() {
        assert!(!root.join(&name).exists());
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived"
        );
    }
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let listed = String::from_utf8_lossy(&netns.stdout);
    assert!(!listed.contains("berth"), "ip netns list shows: {listed}");
    Ok(())
}

#[test]
fn leftovers_of_a_crashed_run_are_removed_by_prefix() -> Result<()> {
    // A process id that is certainly dead: a child we started and reaped.
    let mut child = std::process::Command::new("true").spawn()?;
    child.wait()?;
    let dead = child.id();
    let stale = format!("{}{dead}-0-crashed", cgroups::TEST_PREFIX);
    let root = cgroups::hierarchies()
        .into_iter()
        .find(|h| h.join("cgroup.procs").exists())
        .context("a cgroup hierarchy")?;
    std::fs::create_dir_all(root.join(&stale).join("inner"))?;
    let stale_dir = berth_testhost::testnet::base_dir().join(&stale);
    std::fs::create_dir_all(&stale_dir)?;

    let _net = TestNet::new("leftovers", 1)?;
    assert!(!root.join(&stale).exists(), "stale cgroup survived");
    assert!(!stale_dir.exists(), "stale work dir survived");
    Ok(())
}
