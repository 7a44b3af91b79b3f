//! What a simulated agent receives, counted and decoded cheaply.
//!
//! Every message the controllers send an agent is counted at its protobuf size
//! (the same as `encoded_len` of the full message; gRPC and HTTP/2 framing
//! excluded). Session messages are decoded into a slim view that keeps only
//! what an agent acts on (task ids and desired states): prost skips the rest
//! (the cluster's node list, endpoints, task specs) without allocating, so a
//! thousand simulated agents do not spend the machine's CPU on decoding what
//! the real agent would read.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// `berth.v1.SessionMessage` with only the fields an agent acts on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionMessageView {
    #[prost(oneof = "SessionMessageKind", tags = "1, 2, 3")]
    pub message: Option<SessionMessageKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SessionMessageKind {
    #[prost(message, tag = "1")]
    Assignments(AssignmentsView),
    #[prost(message, tag = "2")]
    NotLeader(berth_proto::v1::NotLeader),
    #[prost(message, tag = "3")]
    Delta(DeltaView),
}

/// `berth.v1.AssignmentsDelta`: changed tasks (field 2) and removed task ids
/// (field 3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaView {
    #[prost(message, repeated, tag = "2")]
    pub tasks: Vec<TaskView>,
    #[prost(string, repeated, tag = "3")]
    pub removed_tasks: Vec<String>,
}

/// `berth.v1.Assignments`: its tasks (field 1) and revision (field 4).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AssignmentsView {
    #[prost(message, repeated, tag = "1")]
    pub tasks: Vec<TaskView>,
    #[prost(uint64, tag = "4")]
    pub revision: u64,
}

/// `berth.v1.Task`: its id (field 1), service (field 2) and desired state
/// (field 8).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskView {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub service_id: String,
    #[prost(enumeration = "berth_proto::v1::TaskState", tag = "8")]
    pub desired_state: i32,
}

/// Prost encoding out, prost decoding in, adding the size of every message
/// received to a shared counter.
pub struct CountingCodec<T, U> {
    received: Arc<AtomicU64>,
    _types: PhantomData<(T, U)>,
}

impl<T, U> CountingCodec<T, U> {
    pub fn new(received: Arc<AtomicU64>) -> Self {
        CountingCodec {
            received,
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for CountingCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CountingDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CountingDecoder {
            received: self.received.clone(),
            _type: PhantomData,
        }
    }
}

pub struct CountingDecoder<U> {
    received: Arc<AtomicU64>,
    _type: PhantomData<U>,
}

impl<U: prost::Message + Default> Decoder for CountingDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The buffer holds exactly one message.
        self.received
            .fetch_add(src.remaining() as u64, Ordering::Relaxed);
        U::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable message: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Assignments, Node, SessionMessage, Task, TaskState, session_message};
    use prost::Message;

    #[test]
    fn the_view_reads_what_the_full_message_says() {
        let full = SessionMessage {
            message: Some(session_message::Message::Assignments(Assignments {
                tasks: vec![Task {
                    id: "t1".into(),
                    node_id: "n1".into(),
                    desired_state: TaskState::Shutdown as i32,
                    spec_version: 3,
                    ..Default::default()
                }],
                nodes: vec![Node {
                    id: "n1".into(),
                    name: "sim-0001".into(),
                    ..Default::default()
                }],
                revision: 42,
                node_id: "n1".into(),
                ..Default::default()
            })),
        };
        let view = SessionMessageView::decode(full.encode_to_vec().as_slice()).expect("decodes");
        let Some(SessionMessageKind::Assignments(a)) = view.message else {
            panic!("not assignments: {view:?}");
        };
        assert_eq!(a.revision, 42);
        assert_eq!(a.tasks.len(), 1);
        assert_eq!(a.tasks[0].id, "t1");
        assert_eq!(a.tasks[0].desired_state, TaskState::Shutdown as i32);
    }
}
