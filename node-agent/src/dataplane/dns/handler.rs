//! Answering one request: from the table, or forwarded upstream.
//!
//! Answers for table names:
//! - `A` (or `ANY`) → every address of the name, shuffled per answer so that
//!   clients taking the first one spread over the tasks, TTL [`TTL_SECS`];
//! - any other type → NOERROR with no records (NODATA): the name exists, it just
//!   has no record of that type, and an NXDOMAIN would tell the client that the
//!   name is gone for every type (e.g. a failing AAAA would kill the A lookup of
//!   a dual-stack client);
//! - a name with no addresses (`tasks.web` with no running task) → also NODATA,
//!   for the same reason: the service exists, it has nothing running right now,
//!   and in a second it may. Such a name is never forwarded upstream.
//!
//! A name of a service this node does not follow yet is answered once the
//! service's tasks are in the kernel (the server asks for them, waiting at
//! most [`FOLLOW_WAIT`]): a client that connects to the VIP it got finds its
//! backends in the load balancer. When the leader sends endpoints on demand,
//! a name the table does not have is asked for by name the first time (the
//! leader answers it, with the endpoints of its services if it has any), and
//! looked up again once answered.
//!
//! Every other name goes upstream (see [`super::forward`]); the answer is relayed
//! with its flags, code and sections, under the client's ID and question. No
//! upstream, or none answering in time → SERVFAIL.

use std::iter;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType, rdata::A};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageRequest, MessageResponseBuilder};
use rand::seq::SliceRandom;
use tokio::sync::watch;

use super::follow::Following;
use super::forward::forward;
use super::table::{DnsTable, normalise};

/// TTL of table answers: a task that stops leaves the answers within a second,
/// even at a client that caches.
pub const TTL_SECS: u32 = 1;

/// How long a query for a service this node does not follow waits for its
/// tasks; after it the name is answered from the table as it is.
pub const FOLLOW_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct Handler {
    pub(crate) table: watch::Receiver<Arc<DnsTable>>,
    pub(crate) upstreams: Vec<SocketAddr>,
    pub(crate) following: Arc<Following>,
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// A table name: these addresses (possibly none: NODATA).
    Local(Vec<Ipv4Addr>),
    Forward,
    Error(ResponseCode),
}

/// `client`: the asking container's address (a container on several
/// networks gets the names of all of them).
fn decide(table: &DnsTable, request: &MessageRequest, client: Option<Ipv4Addr>) -> Decision {
    if request.metadata.op_code != OpCode::Query {
        return Decision::Error(ResponseCode::NotImp);
    }
    // RFC 9619: a query has exactly one question.
    let [query] = request.queries.queries() else {
        return Decision::Error(ResponseCode::FormErr);
    };
    let query = query.original();
    let Some(addrs) = table.lookup_from(client, &query.name().to_ascii()) else {
        return Decision::Forward;
    };
    let class_in = matches!(query.query_class(), DNSClass::IN | DNSClass::ANY);
    let type_a = matches!(query.query_type(), RecordType::A | RecordType::ANY);
    if !(class_in && type_a) {
        return Decision::Local(Vec::new());
    }
    let mut addrs = addrs.to_vec();
    addrs.shuffle(&mut rand::thread_rng());
    Decision::Local(addrs)
}

/// The service to follow before answering `request` (one question, for a
/// name of a service this node does not follow).
fn to_follow(table: &DnsTable, request: &MessageRequest) -> Option<String> {
    let [query] = request.queries.queries() else {
        return None;
    };
    let name = query.original().name().to_ascii();
    table.needs_follow(&name).map(str::to_string)
}

/// The name to ask the leader for before `request` is answered: one
/// question, for a name the table does not have, that `following` asks for.
fn to_ask(
    table: &DnsTable,
    following: &Following,
    request: &MessageRequest,
    client: Option<Ipv4Addr>,
) -> Option<String> {
    let [query] = request.queries.queries() else {
        return None;
    };
    let name = normalise(&query.original().name().to_ascii());
    (table.lookup_from(client, &name).is_none() && following.asks_for(&name)).then_some(name)
}

/// The OPT record of our responses: the client's payload size (which bounds a
/// UDP response; hickory truncates to it) and DO bit, none of its options.
fn response_edns(request: &MessageRequest) -> Option<Edns> {
    request.edns.as_ref().map(|asked| {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload().max(512));
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
        edns
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        // Latest table at the time of the query; the borrow ends here, before any await.
        let mut table = Arc::clone(&self.table.borrow());
        let client = match request.src().ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        };
        if let Some(service) = to_follow(&table, request) {
            if !self.following.follow(&service, FOLLOW_WAIT).await {
                tracing::debug!(%service, "the service's tasks did not arrive in time");
            }
            table = Arc::clone(&self.table.borrow());
        } else if let Some(name) = to_ask(&table, &self.following, request, client) {
            if !self.following.ask_name(&name, FOLLOW_WAIT).await {
                tracing::debug!(%name, "the leader did not answer the name in time");
            }
            table = Arc::clone(&self.table.borrow());
        }
        let decision = decide(&table, request, client);
        drop(table);

        let edns = response_edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let sent = match decision {
            Decision::Local(addrs) => {
                let name = request.queries.queries()[0].original().name();
                let records: Vec<Record> = addrs
                    .into_iter()
                    .map(|ip| Record::from_rdata(name.clone(), TTL_SECS, RData::A(A(ip))))
                    .collect();
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.recursion_available = true;
                let msg = builder.build(
                    metadata,
                    &records,
                    iter::empty(),
                    iter::empty(),
                    iter::empty(),
                );
                response.send_response(msg).await
            }
            Decision::Error(code) => {
                let msg = builder.error_msg(&request.metadata, code);
                response.send_response(msg).await
            }
            Decision::Forward => match self.forward(request).await {
                Ok(answer) => {
                    let mut metadata = answer.metadata;
                    metadata.id = request.metadata.id;
                    let msg = builder.build(
                        metadata,
                        &answer.answers,
                        &answer.authorities,
                        iter::empty(),
                        &answer.additionals,
                    );
                    response.send_response(msg).await
                }
                Err(error) => {
                    tracing::debug!(%error, "DNS forward failed, answering SERVFAIL");
                    let msg = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                    response.send_response(msg).await
                }
            },
        };
        sent.unwrap_or_else(|error| {
            tracing::debug!(%error, src = %request.src(), "cannot send DNS response");
            serve_failed(&request.metadata)
        })
    }
}

impl Handler {
    async fn forward(&self, request: &Request) -> Result<Message, String> {
        let question = request.queries.queries().first().map(|q| q.original());
        let tcp = request.protocol() != Protocol::Udp;
        forward(request.as_slice(), question, tcp, &self.upstreams).await
    }
}

/// What to report to hickory's logging when even the response could not be sent.
fn serve_failed(request: &Metadata) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::Query;
    use hickory_server::proto::rr::Name;

    /// A request as hickory parses it off the wire.
    fn parse(msg: &Message) -> Request {
        let src = "127.0.0.1:5353".parse().unwrap();
        Request::from_bytes(msg.to_vec().unwrap(), src, Protocol::Udp).unwrap()
    }

    fn request(name: &str, qtype: RecordType) -> Request {
        let mut msg = Message::query();
        msg.add_query(Query::query(name.parse::<Name>().unwrap(), qtype));
        parse(&msg)
    }

    fn table() -> DnsTable {
        let mut t = DnsTable::new();
        t.insert("web", vec![Ipv4Addr::new(10, 96, 0, 5)]);
        let tasks = (1..=8).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect();
        t.insert("tasks.web", tasks);
        t.insert("tasks.idle", vec![]);
        t
    }

    #[test]
    fn a_answers_all_addresses_shuffled() {
        let t = table();
        let want: Vec<Ipv4Addr> = t.lookup("tasks.web").unwrap().to_vec();
        let mut orders = std::collections::HashSet::new();
        for _ in 0..20 {
            let Decision::Local(mut got) = decide(&t, &request("TASKS.Web.", RecordType::A), None)
            else {
                panic!("not local");
            };
            orders.insert(got.clone());
            got.sort();
            assert_eq!(got, want);
        }
        // 8! orders: twenty identical draws would mean no shuffling.
        assert!(orders.len() > 1, "answers are never reordered");
    }

    #[test]
    fn other_types_and_empty_names_are_nodata() {
        let t = table();
        let nodata = Decision::Local(vec![]);
        assert_eq!(decide(&t, &request("web.", RecordType::AAAA), None), nodata);
        assert_eq!(decide(&t, &request("web.", RecordType::MX), None), nodata);
        assert_eq!(
            decide(&t, &request("tasks.idle.", RecordType::A), None),
            nodata
        );
    }

    #[test]
    fn unknown_names_are_forwarded() {
        let t = table();
        assert_eq!(
            decide(&t, &request("example.com.", RecordType::A), None),
            Decision::Forward
        );
        assert_eq!(
            decide(&t, &request("tasks.nope.", RecordType::A), None),
            Decision::Forward
        );
    }

    #[test]
    fn zero_questions_and_other_opcodes_are_errors() {
        let t = table();
        let mut update = Message::query();
        update.metadata.op_code = OpCode::Update;
        update.add_query(Query::query("web.".parse().unwrap(), RecordType::A));
        let got = decide(&t, &parse(&update), None);
        assert_eq!(got, Decision::Error(ResponseCode::NotImp));
        let got = decide(&t, &parse(&Message::query()), None);
        assert_eq!(got, Decision::Error(ResponseCode::FormErr));
        let mut two = Message::query();
        two.add_query(Query::query("web.".parse().unwrap(), RecordType::A));
        two.add_query(Query::query("tasks.web.".parse().unwrap(), RecordType::A));
        assert_eq!(
            decide(&t, &parse(&two), None),
            Decision::Error(ResponseCode::FormErr)
        );
    }
}
