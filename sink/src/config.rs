//! Command-line and environment settings of the sink.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDateTime;
use clap::{Args, Parser, Subcommand};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::AdminArgs;

use crate::report::{parse_time_bound, ReportWindow};

/// Stores the monitor's metric rows in PostgreSQL for Grafana.
#[derive(Debug, Parser)]
#[command(name = "sink", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Applies the migrations, then consumes metric rows and upserts them until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Applies the migrations, prints what was applied and exits.
    Migrate(MigrateArgs),
    /// Writes the stored metrics of one monitor and window shape over a time range as one
    /// self-contained HTML page (charts as inline SVG; nothing loaded from anywhere). Reads only.
    Report(Box<ReportArgs>),
}

/// Where the database is and how many connections to keep.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL or key=value string (`postgres://user@host:5432/streamwatch`).
    /// `sslmode=require` connects over TLS (the server's certificate is checked only with
    /// `--database-ca-file`), `prefer` tries TLS first, `disable` never uses it.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streamwatch",
        hide_env_values = true
    )]
    pub database_url: String,

    /// File holding the database password; overrides a password in the URL.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// PEM file of the certificate authority that signed the server's certificate: with it,
    /// TLS connections verify the server's certificate chain and host name.
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Most database connections the sink opens.
    #[arg(long, env = "SINK_POOL_SIZE", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub pool_size: u16,

    /// Seconds to wait for a new database connection (when the URL sets no `connect_timeout`).
    #[arg(long, env = "SINK_CONNECT_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Topic carrying the monitor's metric rows (JSON).
    #[arg(long, env = "SINK_TOPIC", default_value = "metrics")]
    pub topic: String,

    /// Consumer group of the sink.
    #[arg(long, env = "SINK_GROUP", default_value = "sink")]
    pub group: String,

    /// Topic that receives malformed rows with the reason in the `dlq.reason` header.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = "deadletter")]
    pub dead_letter_topic: String,

    /// Most rows written in one transaction when many are waiting.
    #[arg(long, env = "SINK_BATCH_SIZE", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// First pause before retrying a failed database write, in milliseconds; it doubles each attempt.
    #[arg(long, env = "SINK_RETRY_MIN_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_min_ms: u64,

    /// Longest pause between two database retries, in milliseconds (retries go on until shutdown).
    #[arg(long, env = "SINK_RETRY_MAX_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_max_ms: u64,

    /// Seconds between two checks of the broker and the database for `/readyz`.
    #[arg(long, env = "SINK_PROBE_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_interval: u64,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

impl RunArgs {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.retry_min_ms),
            Duration::from_millis(self.retry_max_ms.max(self.retry_min_ms)),
        )
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// First window start to report, inclusive: `2022-02-01` (midnight) or `2022-02-01T06:00:00`,
    /// naive like the event times. Default: the earliest stored window.
    #[arg(long, env = "REPORT_FROM", value_parser = parse_time_bound)]
    pub from: Option<NaiveDateTime>,

    /// Report windows starting before this time (exclusive; same formats as --from), so
    /// `--from 2022-02-01 --to 2022-03-01` is February. Default: the latest stored window.
    #[arg(long, env = "REPORT_TO", value_parser = parse_time_bound)]
    pub to: Option<NaiveDateTime>,

    /// Monitor to report on (the monitor's --monitor-name or spec `name`). Default: the only
    /// monitor with windows of this shape in the range (an error names them if there are several).
    #[arg(long, env = "REPORT_MONITOR")]
    pub monitor: Option<String>,

    /// Window shape to report: SIZE for tumbling windows or SIZE/STEP for sliding ones, as
    /// `monitor run --window` takes them; units s, m, h, d.
    #[arg(long, env = "REPORT_WINDOW", default_value = "1d")]
    pub window: ReportWindow,

    /// HTML file to write (replaced whole; `-` writes the page to standard output).
    #[arg(long, short, env = "REPORT_OUTPUT", default_value = "report.html")]
    pub output: PathBuf,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Capped exponential backoff: `min`, `2 min`, `4 min`, ... up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The pause after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
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
    fn run_defaults() {
        let cli = Cli::try_parse_from(["sink", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected the run command");
        };
        assert_eq!(args.topic, "metrics");
        assert_eq!(args.group, "sink");
        assert_eq!(args.dead_letter_topic, "deadletter");
        assert_eq!(args.database.pool_size, 2);
        assert!(Cli::try_parse_from(["sink", "run", "--pool-size", "0"]).is_err());
        assert!(Cli::try_parse_from(["sink", "run", "--batch-size", "0"]).is_err());
    }

    #[test]
    fn report_options_and_defaults() {
        let cli = Cli::try_parse_from([
            "sink",
            "report",
            "--from",
            "2022-02-01",
            "--to",
            "2022-03-01T00:00:00",
            "--monitor",
            "taxi",
        ])
        .unwrap();
        let Command::Report(args) = cli.command else {
            panic!("expected the report command");
        };
        assert_eq!(args.window, ReportWindow::DAILY);
        assert_eq!(args.output, PathBuf::from("report.html"));
        assert_eq!(args.monitor.as_deref(), Some("taxi"));
        assert_eq!(
            args.to.unwrap() - args.from.unwrap(),
            chrono::Duration::days(28)
        );
        let cli = Cli::try_parse_from(["sink", "report", "--window", "1d/1h", "-o", "-"]).unwrap();
        let Command::Report(args) = cli.command else {
            panic!("expected the report command");
        };
        assert_eq!(args.window.step_seconds, 3_600);
        assert_eq!((args.from, args.to), (None, None));
        assert!(Cli::try_parse_from(["sink", "report", "--window", "1w"]).is_err());
        assert!(Cli::try_parse_from(["sink", "report", "--from", "Feb"]).is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let delays: Vec<u128> = (1..=7).map(|a| backoff.delay(a).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.delay(1000), Duration::from_secs(5));
        assert_eq!(backoff.delay(0), Duration::from_millis(200));
    }
}
