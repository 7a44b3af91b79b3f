//! Compose files (the format `docker stack deploy` takes) read into a berth
//! [`StackSpec`](berth_proto::v1::StackSpec): docs/design/stack-files.md.

pub mod diag;
pub mod yaml;
pub mod dotenv;
pub mod interpolate;
pub mod merge;
pub mod values;
