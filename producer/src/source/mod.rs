//! Where trip events come from: a Parquet file (replay), or JSON from stdin and HTTP (live).

pub mod http;
pub mod live;
pub mod parquet;
