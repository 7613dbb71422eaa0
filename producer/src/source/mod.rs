//! Where trip events come from: a Parquet file (replay) or JSON lines (live).

pub mod live;
pub mod parquet;
