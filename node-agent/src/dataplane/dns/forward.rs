//! Forwarding a query the table does not know to the upstream nameservers.
//!
//! The client's query bytes go out unchanged except for the ID, which is replaced
//! by a random one, from a fresh ephemeral socket per query (random source port):
//! together they make a spoofed answer hard to slip in, as a resolver would.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout};

/// The whole budget for one forwarded query, over all upstreams. Clients (glibc)
/// wait 5 s before retrying; answering SERVFAIL well before that lets them move
/// on instead of hanging.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest DNS message (UDP datagram or TCP frame).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// Sends `query` (a wire-format query as the client sent it; `question` is its
/// question) to `upstreams` in turn and returns the first answer.
///
/// Each upstream gets an equal share of what is left of [`FORWARD_TIMEOUT`], so
/// one that is silent cannot starve the next; one that refuses (ICMP
/// unreachable) fails at once and leaves its share to the others. Over UDP
/// unless `tcp` (the client asked over TCP, most likely because a UDP answer was
/// truncated); a truncated UDP answer is retried over TCP to the same upstream.
/// The error names each upstream and why it failed.
pub(crate) async fn forward(
    query: &[u8],
    question: Option<&Query>,
    tcp: bool,
    upstreams: &[SocketAddr],
) -> Result<Message, String> {
    if query.len() < 2 {
        return Err("query too short".into());
    }
    let deadline = Instant::now() + FORWARD_TIMEOUT;
    let mut errors = Vec::new();
    for (i, &upstream) in upstreams.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            errors.push(format!("{upstream}: not tried, out of time"));
            continue;
        }
        let share = left / (upstreams.len() - i) as u32;
        let id: u16 = rand::random();
        let mut bytes = query.to_vec();
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        let want = Expect { id, question };
        let attempt = async {
            if tcp {
                return exchange_tcp(upstream, &bytes, &want).await;
            }
            let answer = exchange_udp(upstream, &bytes, &want).await?;
            if answer.metadata.truncation {
                return exchange_tcp(upstream, &bytes, &want).await;
            }
            Ok(answer)
        };
        match timeout(share, attempt).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => errors.push(format!("{upstream}: {e}")),
            Err(_) => errors.push(format!("{upstream}: no answer within {share:?}")),
        }
    }
    if errors.is_empty() {
        return Err("no upstream nameservers".into());
    }
    Err(errors.join("; "))
}

/// What an upstream answer must match to be taken as the answer to our query.
struct Expect<'a> {
    id: u16,
    question: Option<&'a Query>,
}

impl Expect<'_> {
    /// Upstreams echo the question; a FORMERR may carry none, so an empty
    /// question section is accepted (the random ID still has to match).
    fn matches(&self, answer: &Message) -> bool {
        answer.metadata.id == self.id
            && answer.metadata.message_type == MessageType::Response
            && match (answer.queries.as_slice(), self.question) {
                ([], _) => true,
                ([got], Some(want)) => {
                    got.name() == want.name()
                        && got.query_type() == want.query_type()
                        && got.query_class() == want.query_class()
                }
                _ => false,
            }
    }
}

async fn exchange_udp(
    upstream: SocketAddr,
    query: &[u8],
    want: &Expect<'_>,
) -> Result<Message, String> {
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)
        .await
        .map_err(|e| format!("udp bind: {e}"))?;
    // Connected: the kernel drops datagrams from anyone else and reports an
    // ICMP port unreachable as ECONNREFUSED on recv, so a dead upstream fails fast.
    socket
        .connect(upstream)
        .await
        .map_err(|e| format!("udp connect: {e}"))?;
    socket
        .send(query)
        .await
        .map_err(|e| format!("udp send: {e}"))?;
    let mut buf = vec![0; MAX_MESSAGE];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("udp receive: {e}"))?;
        // A late answer to an earlier query or garbage: keep waiting (bounded by
        // the caller's timeout) for the one that matches.
        match Message::from_vec(&buf[..n]) {
            Ok(answer) if want.matches(&answer) => return Ok(answer),
            _ => continue,
        }
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    want: &Expect<'_>,
) -> Result<Message, String> {
    let len = u16::try_from(query.len()).map_err(|_| "query too long for TCP".to_string())?;
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("tcp send: {e}"))?;
    let len = stream
        .read_u16()
        .await
        .map_err(|e| format!("tcp receive: {e}"))?;
    let mut buf = vec![0; usize::from(len)];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("tcp receive: {e}"))?;
    let answer = Message::from_vec(&buf).map_err(|e| format!("tcp answer: {e}"))?;
    if !want.matches(&answer) {
        return Err("tcp answer does not match the query".into());
    }
    Ok(answer)
}
