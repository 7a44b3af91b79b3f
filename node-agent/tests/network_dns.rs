//! The embedded DNS server over real sockets on 127.0.0.0/8: table answers,
//! forwarding to a second server acting as the upstream, failures, TCP, garbage.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::dataplane::dns::{DnsServer, DnsTable, FORWARD_TIMEOUT, Following, TTL_SECS};
use hickory_server::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::timeout;

const CLIENT_WAIT: Duration = Duration::from_secs(5);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 5);

fn tasks() -> Vec<Ipv4Addr> {
    (1..=6).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect()
}

fn web_table() -> DnsTable {
    let mut t = DnsTable::new();
    t.insert("web", vec![VIP]);
    t.insert("tasks.web", tasks());
    t.insert("tasks.idle", vec![]);
    t
}

async fn start(
    listen: &str,
    table: DnsTable,
    upstream: Vec<SocketAddr>,
) -> (DnsServer, watch::Sender<Arc<DnsTable>>) {
    let (tx, rx) = watch::channel(Arc::new(table));
    let following = Arc::new(Following::default());
    let server = DnsServer::start(listen.parse().unwrap(), rx, upstream, following)
        .await
        .expect("start DNS server");
    (server, tx)
}

/// `msg` on the wire with its question name in upper case (hickory's encoder
/// writes names in lower case).
fn shouting(msg: &Message) -> Vec<u8> {
    let mut bytes = msg.to_vec().unwrap();
    let end = bytes.len() - 4; // QTYPE and QCLASS follow the name
    bytes[12..end].make_ascii_uppercase();
    bytes
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.id = rand::random();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.parse::<Name>().unwrap(), qtype));
    msg
}

/// Sends raw bytes over UDP from 127.0.0.1 and returns the answer, if any
/// arrives within `wait`.
async fn udp_raw(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(bytes).await.unwrap();
    let mut buf = vec![0; 65535];
    let n = timeout(wait, socket.recv(&mut buf)).await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).expect("server sent a valid DNS message"))
}

/// Sends `bytes`, a query with ID `id`, over UDP; the answer must come and carry it.
async fn udp_bytes(server: SocketAddr, bytes: &[u8], id: u16) -> Message {
    let answer = udp_raw(server, bytes, CLIENT_WAIT)
        .await
        .expect("an answer over UDP");
    assert_eq!(answer.metadata.id, id, "the answer has the query's ID");
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn udp(server: SocketAddr, msg: &Message) -> Message {
    udp_bytes(server, &msg.to_vec().unwrap(), msg.metadata.id).await
}

async fn tcp(server: SocketAddr, msg: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = msg.to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = timeout(CLIENT_WAIT, stream.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(answer.metadata.id, msg.metadata.id);
    answer
}

/// The A addresses of an answer, sorted.
fn addrs(answer: &Message) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0,
            other => panic!("not an A record: {other:?}"),
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_tasks_answer_with_the_table() {
    let (server, _tx) = start("127.0.0.1:0", web_table(), vec![]).await;
    let addr = server.local_addr();
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);

    let answer = udp(addr, &query("web.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addrs(&answer), [VIP]);
    assert_eq!(answer.answers[0].ttl, TTL_SECS);
    assert_eq!(answer.answers[0].name, "web.".parse::<Name>().unwrap());

    let answer = udp(addr, &query("tasks.web.", RecordType::A)).await;
    assert_eq!(addrs(&answer), tasks());
    assert!(answer.answers.iter().all(|r| r.ttl == TTL_SECS));

    // Case does not matter; the client's spelling is echoed in the question.
    let q = query("tasks.web.", RecordType::A);
    let answer = udp_bytes(addr, &shouting(&q), q.metadata.id).await;
    assert_eq!(addrs(&answer), tasks());
    assert_eq!(answer.queries[0].name().to_ascii(), "TASKS.WEB.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_reordered_between_queries() {
    let (server, _tx) = start("127.0.0.1:0", web_table(), vec![]).await;
    let mut orders = std::collections::HashSet::new();
    for _ in 0..20 {
        let answer = udp(server.local_addr(), &query("tasks.web.", RecordType::A)).await;
        let order: Vec<RData> = answer.answers.iter().map(|r| r.data.clone()).collect();
        orders.insert(format!("{order:?}"));
    }
    // 6! = 720 orders: twenty identical answers mean no shuffling.
    assert!(
        orders.len() > 1,
        "tasks.web always answered in the same order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_and_empty_names_are_nodata_never_forwarded() {
    // No upstream: anything forwarded would come back SERVFAIL.
    let (server, _tx) = start("127.0.0.1:0", web_table(), vec![]).await;
    let addr = server.local_addr();
    for (name, qtype) in [
        ("web.", RecordType::AAAA),
        ("tasks.web.", RecordType::MX),
        ("tasks.idle.", RecordType::A),
    ] {
        let answer = udp(addr, &query(name, qtype)).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(answer.answers.is_empty(), "{name} {qtype}");
    }
    let answer = udp(addr, &query("elsewhere.example.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_update_is_visible_at_once() {
    let (server, tx) = start("127.0.0.1:0", web_table(), vec![]).await;
    let addr = server.local_addr();
    assert_eq!(
        addrs(&udp(addr, &query("tasks.web.", RecordType::A)).await),
        tasks()
    );

    // One task stopped, the service's VIP kept, `tasks.idle` gone.
    let mut t = DnsTable::new();
    t.insert("web", vec![VIP]);
    t.insert("tasks.web", tasks()[1..].to_vec());
    tx.send(Arc::new(t)).unwrap();

    let answer = udp(addr, &query("tasks.web.", RecordType::A)).await;
    assert_eq!(addrs(&answer), &tasks()[1..]);
    // Gone from the table: forwarded, and with no upstream that is SERVFAIL.
    let answer = udp(addr, &query("tasks.idle.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

/// A name of a service the node does not follow: the server asks for the
/// service and answers once its tasks are in (here: the network plane's part
/// played by the test), with the table as it is then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_not_followed_is_answered_once_its_tasks_arrive() {
    let mut unfollowed = DnsTable::new();
    unfollowed.insert("web", vec![VIP]);
    unfollowed.insert("tasks.web", vec![]);
    unfollowed.mark_unfollowed("web", "s-web");
    unfollowed.mark_unfollowed("tasks.web", "s-web");
    let (tx, rx) = watch::channel(Arc::new(unfollowed));
    let following = Arc::new(Following::default());
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        rx,
        vec![],
        Arc::clone(&following),
    )
    .await
    .expect("start DNS server");
    let addr = server.local_addr();
    let mut wanted = following.wanted();
    let asking = tokio::spawn(async move { udp(addr, &query("tasks.web.", RecordType::A)).await });
    timeout(CLIENT_WAIT, wanted.changed())
        .await
        .expect("the server asks for the service in time")
        .expect("open");
    assert!(wanted.borrow_and_update().contains("s-web"));
    assert!(!asking.is_finished(), "no answer before the tasks are in");
    // The tasks arrive: the table first, then "in the kernel".
    tx.send(Arc::new(web_table())).unwrap();
    following.set_ready(["s-web".to_string()].into());
    let answer = timeout(CLIENT_WAIT, asking)
        .await
        .expect("answered")
        .expect("query");
    assert_eq!(addrs(&answer), tasks());
    // Followed now: answered at once.
    assert_eq!(
        addrs(&udp(addr, &query("web.", RecordType::A)).await),
        [VIP]
    );
}

/// A leader that sends endpoints on demand: a name the table does not have
/// is asked for by name, and answered once the leader's answer is in (here
/// played by the test): from the table when the name was a service's, else
/// upstream; an answered name is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_table_lacks_is_asked_for_and_answered_once_the_leader_did() {
    let (up, _up_tx) = upstream_server().await;
    let (tx, rx) = watch::channel(Arc::new(DnsTable::new()));
    let following = Arc::new(Following::default());
    following.set_answered(true, Default::default());
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        rx,
        vec![up.local_addr()],
        Arc::clone(&following),
    )
    .await
    .expect("start DNS server");
    let addr = server.local_addr();
    let mut wanted = following.wanted_names();
    let asking = tokio::spawn(async move { udp(addr, &query("Tasks.Web.", RecordType::A)).await });
    timeout(CLIENT_WAIT, wanted.changed())
        .await
        .expect("the server asks for the name in time")
        .expect("open");
    assert_eq!(
        wanted.borrow_and_update().iter().collect::<Vec<_>>(),
        ["tasks.web"]
    );
    assert!(!asking.is_finished(), "no answer before the leader's");
    tx.send(Arc::new(web_table())).unwrap();
    following.set_answered(true, ["tasks.web".to_string()].into());
    let answer = timeout(CLIENT_WAIT, asking)
        .await
        .expect("answered")
        .expect("query");
    assert_eq!(addrs(&answer), tasks());

    // No service's name: answered, then upstream's answer.
    let asking = tokio::spawn(async move { udp(addr, &query("db.example.", RecordType::A)).await });
    timeout(CLIENT_WAIT, wanted.changed())
        .await
        .expect("asked")
        .expect("open");
    assert!(wanted.borrow_and_update().contains("db.example"));
    following.set_answered(
        true,
        ["tasks.web".to_string(), "db.example".to_string()].into(),
    );
    let answer = timeout(CLIENT_WAIT, asking)
        .await
        .expect("answered")
        .expect("query");
    assert_eq!(addrs(&answer), [Ipv4Addr::new(192, 0, 2, 7)]);
    // Asked once: straight upstream now.
    let answer = udp(addr, &query("db.example.", RecordType::A)).await;
    assert_eq!(addrs(&answer), [Ipv4Addr::new(192, 0, 2, 7)]);
    assert!(!wanted.has_changed().expect("open"), "not asked again");
}

/// An upstream on 127.0.0.2 (another DnsServer) knowing `db.example.`, and a
/// `web` of its own that must never be seen through the front server.
async fn upstream_server() -> (DnsServer, watch::Sender<Arc<DnsTable>>) {
    let mut t = DnsTable::new();
    t.insert("db.example", vec![Ipv4Addr::new(192, 0, 2, 7)]);
    t.insert("web", vec![Ipv4Addr::new(192, 0, 2, 99)]);
    t.insert(
        "big.example",
        (0..100).map(|i| Ipv4Addr::new(10, 9, 0, i)).collect(),
    );
    start("127.0.0.2:0", t, vec![]).await
}

/// A UDP port on 127.0.0.3 nobody listens on: the kernel answers ICMP
/// port unreachable.
async fn dead_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_are_forwarded_and_table_names_never() {
    let (up, _up_tx) = upstream_server().await;
    let (front, _tx) = start(
        "127.0.0.1:0",
        web_table(),
        vec![dead_port().await, up.local_addr()],
    )
    .await;
    let addr = front.local_addr();

    let started = Instant::now();
    let q = query("db.example.", RecordType::A);
    let answer = udp_bytes(addr, &shouting(&q), q.metadata.id).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&answer), [Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(answer.queries[0].name().to_ascii(), "DB.EXAMPLE.");
    // The dead first upstream was refused at once, not waited for.
    assert!(
        started.elapsed() < FORWARD_TIMEOUT / 2,
        "{:?}",
        started.elapsed()
    );

    // Relayed as is: the upstream's AAAA NODATA for its name.
    let answer = udp(addr, &query("db.example.", RecordType::AAAA)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());

    let answer = udp(addr, &query("web.", RecordType::A)).await;
    assert_eq!(addrs(&answer), [VIP], "a table name went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_queries_are_answered_and_forwarded() {
    let (up, _up_tx) = upstream_server().await;
    let (front, _tx) = start("127.0.0.1:0", web_table(), vec![up.local_addr()]).await;
    let addr = front.local_addr();

    let answer = tcp(addr, &query("tasks.web.", RecordType::A)).await;
    assert_eq!(addrs(&answer), tasks());
    // 100 A records (well over 512 bytes) come whole over TCP, end to end.
    let answer = tcp(addr, &query("big.example.", RecordType::A)).await;
    assert_eq!(answer.answers.len(), 100);
    assert!(!answer.metadata.truncation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_forwarded_answer_fits_the_clients_payload_size() {
    let (up, _up_tx) = upstream_server().await;
    let (front, _tx) = start("127.0.0.1:0", web_table(), vec![up.local_addr()]).await;
    let addr = front.local_addr();

    // Without EDNS a UDP answer stops at 512 bytes and says it is truncated.
    let answer = udp(addr, &query("big.example.", RecordType::A)).await;
    assert!(answer.metadata.truncation);
    assert!(answer.answers.len() < 100);
    // With a 4096-byte EDNS payload all 100 records come over UDP.
    let mut q = query("big.example.", RecordType::A);
    q.set_edns(Edns::new().set_max_payload(4096).clone());
    let answer = udp(addr, &q).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(answer.answers.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_upstream_answer_is_retried_over_tcp() {
    // A fake upstream on 127.0.0.4: over UDP it answers every query with an
    // empty truncated response, over TCP with one A record.
    let udp_sock = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let upstream = udp_sock.local_addr().unwrap();
    let listener = TcpListener::bind(upstream).await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0; 65535];
        while let Ok((n, peer)) = udp_sock.recv_from(&mut buf).await {
            let mut reply = Message::from_vec(&buf[..n]).unwrap().into_response();
            reply.metadata.truncation = true;
            udp_sock
                .send_to(&reply.to_vec().unwrap(), peer)
                .await
                .unwrap();
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let len = stream.read_u16().await.unwrap();
            let mut buf = vec![0; usize::from(len)];
            stream.read_exact(&mut buf).await.unwrap();
            let mut reply = Message::from_vec(&buf).unwrap().into_response();
            let name = reply.queries[0].name().clone();
            let a = RData::A(Ipv4Addr::new(192, 0, 2, 44).into());
            reply.add_answer(hickory_server::proto::rr::Record::from_rdata(name, 30, a));
            let bytes = reply.to_vec().unwrap();
            stream.write_u16(bytes.len() as u16).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
        }
    });

    let (front, _tx) = start("127.0.0.1:0", DnsTable::new(), vec![upstream]).await;
    let answer = udp(
        front.local_addr(),
        &query("over.tcp.example.", RecordType::A),
    )
    .await;
    assert!(!answer.metadata.truncation);
    assert_eq!(addrs(&answer), [Ipv4Addr::new(192, 0, 2, 44)]);
    assert_eq!(answer.answers[0].ttl, 30, "upstream TTLs are relayed as is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_servfail_within_the_timeout() {
    // Refused at once (nobody on the port).
    let (front, _tx) = start("127.0.0.1:0", web_table(), vec![dead_port().await]).await;
    let started = Instant::now();
    let answer = udp(front.local_addr(), &query("example.com.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < FORWARD_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    // Silent (a socket that never answers): SERVFAIL once the budget is spent.
    let silent = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let (front, _tx) = start(
        "127.0.0.1:0",
        web_table(),
        vec![silent.local_addr().unwrap()],
    )
    .await;
    let started = Instant::now();
    let answer = udp(front.local_addr(), &query("example.com.", RecordType::A)).await;
    let took = started.elapsed();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= FORWARD_TIMEOUT - Duration::from_millis(100),
        "{took:?}"
    );
    assert!(took < FORWARD_TIMEOUT + Duration::from_secs(1), "{took:?}");
    // The silent upstream did get the query, under another ID.
    let mut buf = [0; 512];
    let (n, _) = silent
        .try_recv_from(&mut buf)
        .expect("the query reached the upstream");
    assert!(Message::from_vec(&buf[..n]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_stop_the_server() {
    let (server, _tx) = start("127.0.0.1:0", web_table(), vec![]).await;
    let addr = server.local_addr();
    let short = Duration::from_millis(300);

    // Too short for a header: dropped without an answer.
    assert!(udp_raw(addr, &[0xde, 0xad, 0xbe], short).await.is_none());
    // A header announcing a question that is not there: FORMERR under its ID.
    let header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let answer = udp_raw(addr, &header, CLIENT_WAIT).await.expect("FORMERR");
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    // Random bytes, whatever they parse as.
    let noise: Vec<u8> = (0..300).map(|_| rand::random()).collect();
    let _ = udp_raw(addr, &noise, short).await;
    // Zero and two questions: FORMERR.
    let mut none = query("web.", RecordType::A);
    none.queries.clear();
    assert_eq!(
        udp(addr, &none).await.metadata.response_code,
        ResponseCode::FormErr
    );
    let mut two = query("web.", RecordType::A);
    two.add_query(Query::query("tasks.web.".parse().unwrap(), RecordType::A));
    assert_eq!(
        udp(addr, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // Garbage over TCP: a frame of noise, then the connection closed.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&[0, 5, 1, 2, 3, 4, 5, 0xff])
        .await
        .unwrap();
    drop(stream);

    let answer = udp(addr, &query("web.", RecordType::A)).await;
    assert_eq!(addrs(&answer), [VIP]);
    let answer = tcp(addr, &query("web.", RecordType::A)).await;
    assert_eq!(addrs(&answer), [VIP]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_local_address_is_a_clear_error() {
    // 192.0.2.1 (TEST-NET-1) is on no interface here; binding it sends nothing.
    let (_tx, rx) = watch::channel(Arc::new(DnsTable::new()));
    let err = DnsServer::start("192.0.2.1:53".parse().unwrap(), rx, vec![], Arc::default())
        .await
        .err()
        .expect("binding a non-local address fails");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot listen for DNS on 192.0.2.1:53"),
        "{msg}"
    );
    assert!(msg.contains("assign requested address"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_is_free_again_after_shutdown_or_drop() {
    let (server, _tx) = start("127.0.0.5:0", web_table(), vec![]).await;
    let addr = server.local_addr();
    server.shutdown().await;
    let (again, _tx2) = start(&addr.to_string(), web_table(), vec![]).await;
    assert_eq!(
        addrs(&udp(addr, &query("web.", RecordType::A)).await),
        [VIP]
    );

    // A dropped server's tasks are aborted asynchronously: the port frees soon.
    drop(again);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (_tx, rx) = watch::channel(Arc::new(web_table()));
        match DnsServer::start(addr, rx, vec![], Arc::default()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{addr} still taken after drop: {e}"),
        }
    }
}
