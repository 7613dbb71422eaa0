//! Command-line and environment settings of the producer.

use std::path::PathBuf;

use chrono::{NaiveDate, NaiveDateTime};
use clap::{Args, Parser, Subcommand, ValueEnum};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::AdminArgs;

/// Publishes taxi trips to Kafka as JSON events, from a TLC Parquet file or from stdin.
#[derive(Debug, Parser)]
#[command(name = "producer", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replays a TLC Parquet file in event-time order.
    Replay(ReplayArgs),
    /// Publishes JSON objects read from stdin, one per line, until EOF or a signal.
    Live(LiveArgs),
}

/// The columns a TLC trip file must have for the model and the monitor.
pub const DEFAULT_REQUIRED_COLUMNS: &str = "lpep_pickup_datetime,lpep_dropoff_datetime,PULocationID,DOLocationID,passenger_count,trip_distance,fare_amount,total_amount";

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Parquet file to replay (a TLC trip-record file).
    #[arg(long, env = "PRODUCER_FILE")]
    pub file: PathBuf,

    /// Topic the trip events are published to.
    #[arg(long, env = "PRODUCER_TOPIC", default_value = "trips")]
    pub topic: String,

    /// Column holding each trip's event time (timestamp, date or timestamp string).
    #[arg(
        long,
        env = "PRODUCER_TIME_COLUMN",
        default_value = "lpep_pickup_datetime"
    )]
    pub time_column: String,

    /// Replay only events at or after this time (`2022-02-01` or `2022-02-01T00:00:00`); default: no lower bound.
    #[arg(long, env = "PRODUCER_FROM", value_parser = parse_time_bound)]
    pub from: Option<NaiveDateTime>,

    /// Replay only events before this time (same formats as --from); default: no upper bound.
    #[arg(long, env = "PRODUCER_TO", value_parser = parse_time_bound)]
    pub to: Option<NaiveDateTime>,

    /// Publish at most this many events (the earliest, after filtering); default: all.
    #[arg(long, env = "PRODUCER_LIMIT")]
    pub limit: Option<usize>,

    /// Replay speed: 0 publishes as fast as possible; F > 0 divides event-time gaps by F
    /// (3600 = one hour of trips per second).
    #[arg(long, env = "PRODUCER_SPEED", default_value_t = 0.0, value_parser = parse_speed)]
    pub speed: f64,

    /// Longest wall-clock pause between two events when --speed is set, in seconds; longer
    /// event-time gaps (outliers years before the month) are shortened to it.
    #[arg(long, env = "PRODUCER_MAX_PAUSE", default_value_t = 5.0, value_parser = parse_pause)]
    pub max_pause: f64,

    /// Comma-separated columns the file must have (the time column is always required).
    #[arg(
        long,
        env = "PRODUCER_REQUIRED_COLUMNS",
        value_delimiter = ',',
        default_value = DEFAULT_REQUIRED_COLUMNS
    )]
    pub required_columns: Vec<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

/// What live mode does with an object that has neither an event-time nor a pickup-time field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimeFallback {
    /// Use the time the line arrived (the machine's local clock, like TLC's naive local times).
    Arrival,
    /// Send the line to the dead-letter topic.
    Reject,
}

#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Topic the trip events are published to.
    #[arg(long, env = "PRODUCER_TOPIC", default_value = "trips")]
    pub topic: String,

    /// Field holding an object's event time.
    #[arg(long, env = "PRODUCER_EVENT_TIME_FIELD", default_value = "event_time")]
    pub event_time_field: String,

    /// Field used as the event time when the event-time field is absent or null.
    #[arg(
        long,
        env = "PRODUCER_TIME_COLUMN",
        default_value = "lpep_pickup_datetime"
    )]
    pub time_column: String,

    /// When neither time field is present: `arrival` stamps the arrival time, `reject` dead-letters the line.
    #[arg(long, env = "PRODUCER_TIME_FIELD_FALLBACK", value_enum, default_value_t = TimeFallback::Reject)]
    pub time_field_fallback: TimeFallback,

    /// Topic that receives invalid lines with the reason in the `dlq.reason` header.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = "deadletter")]
    pub dead_letter_topic: String,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Accepts a date (midnight) or a timestamp as `parse_timestamp` reads it.
pub fn parse_time_bound(value: &str) -> Result<NaiveDateTime, String> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN));
    }
    streamwatch_common::events::parse_timestamp(value)
        .map_err(|_| format!("{value:?} is neither YYYY-MM-DD nor YYYY-MM-DDTHH:MM:SS[.ffffff]"))
}

fn parse_non_negative(value: &str, what: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(number) if number.is_finite() && number >= 0.0 => Ok(number),
        _ => Err(format!(
            "{what} must be a finite number >= 0, got {value:?}"
        )),
    }
}

fn parse_speed(value: &str) -> Result<f64, String> {
    parse_non_negative(value, "speed")
}

fn parse_pause(value: &str) -> Result<f64, String> {
    parse_non_negative(value, "max pause")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn time_bounds_accept_dates_and_timestamps() {
        let midnight = parse_time_bound("2022-02-01").unwrap();
        assert_eq!(midnight, parse_time_bound("2022-02-01T00:00:00").unwrap());
        assert_eq!(
            parse_time_bound("2022-02-01 12:30:00").unwrap() - midnight,
            chrono::Duration::minutes(750)
        );
        assert!(parse_time_bound("01/02/2022").is_err());
    }

    #[test]
    fn replay_defaults_and_required_columns() {
        let cli = Cli::try_parse_from([
            "producer",
            "replay",
            "--file",
            "trips.parquet",
            "--required-columns",
            "a,b",
        ])
        .unwrap();
        let Command::Replay(args) = cli.command else {
            panic!("expected the replay command");
        };
        assert_eq!(args.topic, "trips");
        assert_eq!(args.speed, 0.0);
        assert_eq!(args.required_columns, ["a", "b"]);
        assert!(
            Cli::try_parse_from(["producer", "replay", "--file", "x", "--speed", "-1"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["producer", "replay", "--file", "x", "--speed", "NaN"]).is_err()
        );
    }

    #[test]
    fn default_required_columns_split() {
        let cli = Cli::try_parse_from(["producer", "replay", "--file", "x"]).unwrap();
        let Command::Replay(args) = cli.command else {
            panic!("expected the replay command");
        };
        assert_eq!(args.required_columns.len(), 8);
        assert!(args.required_columns.iter().any(|c| c == "fare_amount"));
    }
}
