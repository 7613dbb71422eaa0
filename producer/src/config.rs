//! Command-line and environment settings of the producer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use clap::{Args, Parser, Subcommand, ValueEnum};
use streamwatch_common::events::{EVENT_TIME, TRIP_ID};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::AdminArgs;

use crate::source::parquet::{DEFAULT_TRUTH_FIELD, PREDICTION_TIME};

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
    /// Publishes live JSON events from stdin (one per line) and/or HTTP (`POST /events`) until
    /// the inputs end or a signal arrives.
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

    /// Replay only trips with an event time at or after this time (`2022-02-01` or
    /// `2022-02-01T00:00:00`); default: no lower bound.
    #[arg(long, env = "PRODUCER_FROM", value_parser = parse_time_bound)]
    pub from: Option<NaiveDateTime>,

    /// Replay only trips with an event time before this time (same formats as --from); their
    /// completions are published even when they come later. Default: no upper bound.
    #[arg(long, env = "PRODUCER_TO", value_parser = parse_time_bound)]
    pub to: Option<NaiveDateTime>,

    /// Publish at most this many trips (the earliest, after filtering), each with its completion
    /// when completions are on; default: all.
    #[arg(long, env = "PRODUCER_LIMIT")]
    pub limit: Option<usize>,

    /// Replay speed: 0 publishes as fast as possible; F > 0 divides event-time gaps (between
    /// trips and completions alike) by F (3600 = one hour of trips per second).
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

    /// Topic for completion events (the ground truth): when a replayed trip ends, a JSON object
    /// with its trip_id, event_time (the completion time), prediction_time (the trip's event
    /// time) and the truth field, keyed by the trip id and interleaved with the trips in event-time
    /// order. Default: none (no completions are published).
    #[arg(long, env = "PRODUCER_COMPLETIONS_TOPIC")]
    pub completions_topic: Option<String>,

    /// Column holding each trip's completion time (timestamp, date or timestamp string); trips
    /// without one get no completion. Default: the file's dropoff column, the time column with
    /// `pickup` replaced by `dropoff` (`lpep_dropoff_datetime` for green taxis) or else the first
    /// of `lpep_dropoff_datetime`, `tpep_dropoff_datetime`, `dropoff_datetime`,
    /// `dropOff_datetime` the file has.
    #[arg(long, env = "PRODUCER_COMPLETION_TIME_COLUMN")]
    pub completion_time_column: Option<String>,

    /// Field of the completion event holding the truth: the file's column of that name when it
    /// has one, otherwise the trip duration in minutes (completion time - event time, as
    /// `total_seconds() / 60`; negative when the file's dropoff precedes the pickup).
    #[arg(
        long,
        env = "PRODUCER_TRUTH_FIELD",
        default_value = DEFAULT_TRUTH_FIELD,
        value_parser = parse_truth_field
    )]
    pub truth_field: String,

    /// Resume an interrupted replay after the events already in its topics (on by default;
    /// --no-resume, --resume=false or PRODUCER_RESUME=false send the whole range again).
    ///
    /// Before sending, the replay reads the topic (and the completions topic) from the beginning
    /// of every partition to its end, finds this replay's events already there (by trip id,
    /// `<file stem>:<row>`, the row mapped back to its place in the event-time order) and starts
    /// at the first event of the replay order, trips and completions merged, that is missing. A
    /// replay restarted after a crash then sends what is missing plus the few events that were
    /// in flight on other partitions (duplicates, which the monitor drops by trip id); a finished
    /// replay run again sends nothing. Pacing (--speed) starts at the resumed event time. The
    /// topics must still hold the earlier run's messages (retention).
    #[arg(
        long,
        env = "PRODUCER_RESUME",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        overrides_with = "no_resume"
    )]
    pub resume: bool,

    /// Do not resume: send every event of the range, also those already in the topic.
    #[arg(long, overrides_with = "resume")]
    pub no_resume: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

impl ReplayArgs {
    /// The completions topic, when completions are on (an empty name turns them off).
    pub fn completions_topic(&self) -> Option<&str> {
        self.completions_topic.as_deref().filter(|t| !t.is_empty())
    }

    /// Whether the replay resumes after the events already published.
    pub fn resumes(&self) -> bool {
        self.resume && !self.no_resume
    }
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

    /// Monitoring spec (TOML, as `monitor --spec`) the events are checked against: each of its
    /// numerical and categorical columns must be present (null for a missing value), numerical
    /// ones (and the target, when given) as numbers, categorical ones as a string, number or
    /// boolean; its timestamp column replaces --time-column. Without a spec only the event
    /// time and the trip id are checked.
    #[arg(long, env = "PRODUCER_SPEC")]
    pub spec: Option<PathBuf>,

    /// Read JSON lines from stdin: on by default unless --http-addr is given; `--stdin` keeps it
    /// on next to HTTP, `--stdin=false` turns it off.
    #[arg(
        long,
        env = "PRODUCER_STDIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub stdin: Option<bool>,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

impl LiveArgs {
    /// Whether stdin is one of the inputs.
    pub fn reads_stdin(&self) -> bool {
        self.stdin.unwrap_or(self.http.http_addr.is_none())
    }
}

/// The HTTP source of live mode.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Serve `POST /events` (and `GET /healthz`) on this address; port 0 picks a free port, which
    /// is logged. Without it no HTTP source runs.
    #[arg(long, env = "PRODUCER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Largest request body in bytes; a larger one is answered with 413.
    #[arg(
        long,
        env = "PRODUCER_HTTP_MAX_BODY_BYTES",
        default_value_t = 1 << 20,
        value_parser = parse_body_limit
    )]
    pub http_max_body_bytes: usize,

    /// Seconds a request waits for the broker to acknowledge its events before it is answered
    /// with 503 (the events may still be delivered later).
    #[arg(
        long,
        env = "PRODUCER_HTTP_ACK_TIMEOUT",
        default_value = "30",
        value_parser = parse_ack_timeout
    )]
    pub http_ack_timeout: Duration,
}

/// Accepts a date (midnight) or a timestamp as `parse_timestamp` reads it.
pub fn parse_time_bound(value: &str) -> Result<NaiveDateTime, String> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN));
    }
    streamwatch_common::events::parse_timestamp(value)
        .map_err(|_| format!("{value:?} is neither YYYY-MM-DD nor YYYY-MM-DDTHH:MM:SS[.ffffff]"))
}

/// A truth field name that does not clash with the other fields of a completion event.
fn parse_truth_field(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("the truth field needs a name".to_owned());
    }
    if [TRIP_ID, EVENT_TIME, PREDICTION_TIME].contains(&value) {
        return Err(format!(
            "{value:?} is a field every completion event has; choose another truth field"
        ));
    }
    Ok(value.to_owned())
}

fn parse_non_negative(value: &str, what: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(number) if number.is_finite() && number >= 0.0 => Ok(number),
        _ => Err(format!(
            "{what} must be a finite number >= 0, got {value:?}"
        )),
    }
}

fn parse_body_limit(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(format!(
            "the body limit must be a whole number of bytes > 0, got {value:?}"
        )),
    }
}

fn parse_ack_timeout(value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(format!(
            "the acknowledgement timeout must be a number of seconds > 0, got {value:?}"
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

    fn replay(args: &[&str]) -> Result<ReplayArgs, clap::Error> {
        let cli = Cli::try_parse_from(["producer", "replay", "--file", "x"].iter().chain(args))?;
        let Command::Replay(args) = cli.command else {
            panic!("expected the replay command");
        };
        Ok(args)
    }

    #[test]
    fn completions_are_off_unless_a_topic_is_given() {
        let args = replay(&[]).unwrap();
        assert_eq!(args.completions_topic(), None);
        assert_eq!(args.completion_time_column, None);
        assert_eq!(args.truth_field, "duration_min");
        assert_eq!(
            replay(&["--completions-topic", ""])
                .unwrap()
                .completions_topic(),
            None
        );

        let args = replay(&[
            "--completions-topic",
            "completions",
            "--completion-time-column",
            "done_at",
            "--truth-field",
            "minutes",
        ])
        .unwrap();
        assert_eq!(args.completions_topic(), Some("completions"));
        assert_eq!(args.completion_time_column.as_deref(), Some("done_at"));
        assert_eq!(args.truth_field, "minutes");
        for bad in ["", "trip_id", "event_time", "prediction_time"] {
            let error = replay(&["--truth-field", bad]).unwrap_err().to_string();
            assert!(error.contains("truth field"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn replays_resume_unless_told_not_to() {
        assert!(replay(&[]).unwrap().resumes());
        assert!(replay(&["--resume"]).unwrap().resumes());
        assert!(replay(&["--resume=true"]).unwrap().resumes());
        assert!(!replay(&["--resume=false"]).unwrap().resumes());
        assert!(!replay(&["--no-resume"]).unwrap().resumes());
        // The last flag wins.
        assert!(replay(&["--no-resume", "--resume"]).unwrap().resumes());
        assert!(!replay(&["--resume", "--no-resume"]).unwrap().resumes());
        assert!(replay(&["--resume=maybe"]).is_err());
        let help = Cli::command()
            .find_subcommand_mut("replay")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--no-resume") && help.contains("PRODUCER_RESUME"),
            "{help}"
        );
    }

    fn live(args: &[&str]) -> LiveArgs {
        let cli = Cli::try_parse_from(["producer", "live"].iter().chain(args)).unwrap();
        let Command::Live(args) = cli.command else {
            panic!("expected the live command");
        };
        args
    }

    #[test]
    fn stdin_is_the_default_source_unless_http_is_given() {
        let args = live(&[]);
        assert!(args.reads_stdin());
        assert_eq!(args.http.http_addr, None);
        assert_eq!(args.http.http_max_body_bytes, 1 << 20);
        assert_eq!(args.http.http_ack_timeout, Duration::from_secs(30));

        let args = live(&["--http-addr", "127.0.0.1:0"]);
        assert!(!args.reads_stdin());
        assert_eq!(args.http.http_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert!(live(&["--http-addr", "127.0.0.1:0", "--stdin"]).reads_stdin());
        assert!(live(&["--http-addr", "127.0.0.1:0", "--stdin=true"]).reads_stdin());
        assert!(!live(&["--stdin=false"]).reads_stdin());

        let args = live(&["--http-max-body-bytes", "512", "--http-ack-timeout", "0.5"]);
        assert_eq!(args.http.http_max_body_bytes, 512);
        assert_eq!(args.http.http_ack_timeout, Duration::from_millis(500));
        for bad in [
            ["--http-max-body-bytes", "0"],
            ["--http-ack-timeout", "0"],
            ["--http-ack-timeout", "NaN"],
            ["--http-addr", "localhost"],
        ] {
            assert!(
                Cli::try_parse_from(["producer", "live"].iter().chain(&bad)).is_err(),
                "{bad:?}"
            );
        }
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
