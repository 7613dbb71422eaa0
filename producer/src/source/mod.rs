//! Where trip events come from: a Parquet file (replay, with the trips' completions merged in
//! by `schedule`), or JSON from stdin and HTTP (live).

pub mod http;
pub mod live;
pub mod parquet;
pub mod schedule;
