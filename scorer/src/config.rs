//! Command-line and environment settings of the `scorer` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::AdminArgs;

/// Scores NYC green-taxi trips with the linear trip-duration model: trains the model,
/// scores Parquet files, or runs as the stream stage between `trips` and `trips.scored`.
#[derive(Debug, Parser)]
#[command(name = "scorer", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit the model on a TLC file; write the model JSON and the reference Parquet file.
    Train(TrainArgs),
    /// Score a Parquet file offline: every input column plus `prediction`.
    ScoreFile(ScoreFileArgs),
    /// Consume trip events, add `prediction` and `model_version`, produce them (Kafka).
    Run(Box<RunArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model JSON file to score with.
    #[arg(
        long = "model",
        env = "SCORER_MODEL",
        default_value = "models/trip-duration-linear.json"
    )]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// TLC green-taxi Parquet file to train on.
    #[arg(
        long,
        env = "SCORER_TRAIN_INPUT",
        default_value = "data/green_tripdata_2022-01.parquet"
    )]
    pub input: PathBuf,

    /// Where to write the model JSON.
    #[arg(
        long,
        env = "SCORER_MODEL_OUT",
        default_value = "models/trip-duration-linear.json"
    )]
    pub model_out: PathBuf,

    /// Where to write the reference data (the kept rows not trained on, with
    /// `duration_min` and `prediction`), zstd-compressed Parquet.
    #[arg(
        long,
        env = "SCORER_REFERENCE_OUT",
        default_value = "data/reference.parquet"
    )]
    pub reference_out: PathBuf,

    /// Number of kept rows, in file order, to fit on (rows); the rest become the reference.
    #[arg(long, env = "SCORER_TRAIN_ROWS", default_value_t = 30_000)]
    pub train_rows: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ScoreFileArgs {
    /// Parquet file to score; it needs the model's feature columns (Int32, Int64 or Float64).
    #[arg(long, env = "SCORER_SCORE_INPUT")]
    pub input: PathBuf,

    /// Parquet file to write (zstd): the input columns plus `prediction` (minutes).
    #[arg(long, env = "SCORER_SCORE_OUTPUT")]
    pub output: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Topic of trip events (JSON objects, key = trip_id) to score.
    #[arg(long, env = "SCORER_INPUT_TOPIC", default_value = "trips")]
    pub input_topic: String,

    /// Topic receiving the scored events.
    #[arg(long, env = "SCORER_OUTPUT_TOPIC", default_value = "trips.scored")]
    pub output_topic: String,

    /// Topic receiving events that cannot be scored, with the reason in the `dlq.reason` header.
    #[arg(long, env = "SCORER_DEAD_LETTER_TOPIC", default_value = "deadletter")]
    pub dead_letter_topic: String,

    /// Consumer group id; offsets are committed only for delivered outputs.
    #[arg(long, env = "SCORER_GROUP", default_value = "scorer")]
    pub group: String,

    /// Most events scored but not yet acknowledged by the broker, waiting batches included
    /// (events); consumption pauses at this many.
    #[arg(long, env = "SCORER_MAX_IN_FLIGHT", default_value_t = 50_000)]
    pub max_in_flight: usize,

    /// Most scored events per output message (events). Each output partition's events go in
    /// batches, one JSON object per line with the header `content-type:
    /// application/x-ndjson`, to the partition the trip id's key would go to. 1 sends every
    /// event as its own JSON message keyed by its trip id.
    #[arg(long, env = "SCORER_BATCH_EVENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_events: u32,

    /// Most payload bytes per output message (bytes); keep it under the broker's and the
    /// producer's message size limit (`message.max.bytes`, 1,000,000 by default).
    #[arg(long, env = "SCORER_BATCH_MAX_BYTES", default_value_t = 512 * 1024)]
    pub batch_max_bytes: usize,

    /// Longest a scored event waits for its batch to fill before the batch is sent
    /// (milliseconds).
    #[arg(long, env = "SCORER_BATCH_LINGER_MS", default_value_t = 20)]
    pub batch_linger_ms: u64,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}
