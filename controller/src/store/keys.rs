//! Key layout of the sled `state` tree.
//!
//! - `o/<table>/<id>`  → an `Object` (prost)
//! - `n/<table>/<key>`  → id, for each unique key of an object: its name, and
//!   for services each published port (`port:8080/tcp`)
//! - `m/...`           → meta: revision, applied index/term, conf state, members

pub const REVISION: &[u8] = b"m/revision";
pub const APPLIED_INDEX: &[u8] = b"m/applied_index";
pub const APPLIED_TERM: &[u8] = b"m/applied_term";
pub const CONF_STATE: &[u8] = b"m/conf_state";
pub const MEMBERS: &[u8] = b"m/members";
pub const CLUSTER_ID: &[u8] = b"m/cluster_id";

pub fn object(table: &str, id: &str) -> Vec<u8> {
    format!("o/{table}/{id}").into_bytes()
}

pub fn table_prefix(table: &str) -> Vec<u8> {
    format!("o/{table}/").into_bytes()
}

pub fn name(table: &str, name: &str) -> Vec<u8> {
    format!("n/{table}/{name}").into_bytes()
}

/// Keys a snapshot replaces (everything but what is local to this member).
pub fn is_replicated(key: &[u8]) -> bool {
    key.starts_with(b"o/") || key.starts_with(b"n/") || key.starts_with(b"m/")
}
