//! Command-line options of the monitor.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::AdminArgs;

use crate::mapping::{ColumnMapping, MappingArgs};
use crate::spec::Spec;
use crate::{MonitorError, Result};
use streamwatch_common::spec::{AlertSpec, ModelSpec, PerformanceSpec, SegmentSpec};

/// Computes drift, data-quality and quantile metrics of scored events per event-time
/// window, against a reference data set, as Evidently's legacy report does.
#[derive(Debug, Parser)]
#[command(name = "monitor", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume scored events from Kafka and publish one metric row per window (or, with
    /// `--partials-topic`, each pane's state per partition for `merge`).
    Run(Box<RunArgs>),
    /// Combine the pane states of `run --partials-topic` workers into windows and publish
    /// one metric row per window, exactly as a single instance would.
    Merge(Box<MergeArgs>),
    /// Compute the same metrics over a scored Parquet file and print them as JSON.
    Batch(Box<BatchArgs>),
    /// Build the reference profile once and store it, so `run` and `batch` load it with
    /// `--reference <output>` instead of aggregating the reference data.
    Profile(Box<ProfileArgs>),
}

/// What to monitor: a spec file, or the column-mapping options and the reference data.
#[derive(Debug, Clone, Args)]
pub struct MonitoredArgs {
    /// Monitoring spec (TOML, see examples/specs/taxi.toml). When given, it replaces the
    /// column-mapping, reference, quantile and window options.
    #[arg(long, env = "MONITOR_SPEC")]
    pub spec: Option<PathBuf>,

    #[command(flatten)]
    pub mapping: MappingArgs,

    /// Reference data (Parquet with the mapped columns, or a stored profile); its profile is
    /// built once at start.
    #[arg(
        long,
        env = "MONITOR_REFERENCE",
        default_value = "data/reference.parquet"
    )]
    pub reference: String,

    /// The monitored model (the scorer's JSON, or an ONNX linear/logistic regression from
    /// scikit-learn) for per-feature contributions; without it none are reported. A spec's
    /// `[model]` replaces it.
    #[arg(long, env = "MONITOR_MODEL")]
    pub model: Option<PathBuf>,

    /// Columns feeding an ONNX model's input, in order, comma-separated.
    #[arg(long, env = "MONITOR_MODEL_FEATURES", value_delimiter = ',')]
    pub model_features: Vec<String>,
}

/// Topics and windows, the same for `run` and `merge` (a merger takes its workers' values).
#[derive(Debug, Clone, Args)]
pub struct WindowedArgs {
    /// Topic of scored trip events (for `merge`: its partitions are the ones every window
    /// waits for a watermark from).
    #[arg(long, env = "MONITOR_INPUT_TOPIC", default_value = "trips.scored")]
    pub input_topic: String,

    /// Topic the metric rows are published to.
    #[arg(long, env = "MONITOR_OUTPUT_TOPIC", default_value = "metrics")]
    pub output_topic: String,

    /// Topic for messages that cannot be decoded (with the reason in headers).
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = "deadletter")]
    pub dead_letter_topic: String,

    /// Windows as SIZE (tumbling) or SIZE/STEP (sliding), units s, m, h, d; repeat or
    /// separate with commas for several (for example `1d,1h,1d/1h`).
    #[arg(
        long = "window",
        env = "MONITOR_WINDOWS",
        value_delimiter = ',',
        default_value = "1d"
    )]
    pub windows: Vec<String>,

    /// How long after a window closed late events still update it (it is emitted again
    /// with a higher revision); later events are dropped and counted (duration: 30m, 1h).
    #[arg(long, env = "MONITOR_UPDATE_HORIZON", default_value = "1h")]
    pub update_horizon: String,

    /// Topic keeping the alert rules' state (their streaks of breaching windows), read back at
    /// start so that a restart goes on with them; may be compacted. Used by the processes
    /// that evaluate alerts (a single monitor, or the merger); empty keeps the state in
    /// memory only.
    #[arg(
        long,
        env = "MONITOR_ALERT_STATE_TOPIC",
        default_value = "monitor.alert-state"
    )]
    pub alert_state_topic: String,
}

/// Model performance, the same for `run` and `merge` (a merger takes its workers' values).
#[derive(Debug, Clone, Args)]
pub struct PerformanceArgs {
    /// Topic of completion events (trip id, completion time, prediction time and the
    /// target), joined with the scored events for model performance; empty: no performance.
    /// Scale-out workers need it partitioned like the scored topic (same partition count,
    /// keyed by trip id); for `merge`, set it to merge the workers' performance too.
    #[arg(long, env = "MONITOR_COMPLETIONS_TOPIC", default_value = "")]
    pub completions_topic: String,

    /// Field of completion events holding the target (the spec's `target` overrides it).
    #[arg(long, env = "MONITOR_TARGET", default_value = "duration_min")]
    pub target: String,

    /// How long after a prediction its completion may arrive (event time): a window's
    /// performance is reported once the watermark passes its end plus this; predictions
    /// without a completion by then count as unlabelled (duration: 30m, 3h).
    #[arg(long, env = "MONITOR_LABEL_HORIZON", default_value = "3h")]
    pub label_horizon: String,
}

/// Options of `monitor run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,

    #[command(flatten)]
    pub monitored: MonitoredArgs,

    #[command(flatten)]
    pub windowed: WindowedArgs,

    /// Kafka consumer group. Without `--partials-topic` run one instance per group; with
    /// it, any number of instances split the partitions and `monitor merge` combines them.
    #[arg(long, env = "MONITOR_GROUP", default_value = "monitor")]
    pub group: String,

    /// Scale-out: publish each pane's exact state per partition, and each partition's
    /// watermark, to this topic for `monitor merge`, instead of evaluating windows here.
    /// Empty: this instance evaluates its windows itself.
    #[arg(long, env = "MONITOR_PARTIALS_TOPIC", default_value = "")]
    pub partials_topic: String,

    /// How far behind the newest event time of a partition events may still arrive before
    /// windows close (duration: 30s, 5m, 1h).
    #[arg(long, env = "MONITOR_ALLOWED_LATENESS", default_value = "60s")]
    pub allowed_lateness: String,

    /// Wall-clock time after which a partition that is read to its end and delivers nothing
    /// stops holding the watermark back; when all partitions are idle, windows with new
    /// events are emitted early (and again, with a higher revision, if more events come).
    /// A partition ended by a replay's end-of-stream markers is idle without waiting.
    #[arg(long, env = "MONITOR_IDLE_TIMEOUT", default_value = "5s")]
    pub idle_timeout: String,

    #[command(flatten)]
    pub performance: PerformanceArgs,

    /// Largest number of events decoded and aggregated as one micro-batch.
    #[arg(long, env = "MONITOR_MAX_BATCH", default_value_t = 8192)]
    pub max_batch: usize,

    /// How often this instance publishes a health record (throughput, consumer lag, open
    /// windows, emit latency, memory) to the metrics topic for the service-health
    /// dashboard: 10s, 1m, ...; 0 turns it off.
    #[arg(long, env = "MONITOR_HEALTH_INTERVAL", default_value = "10s")]
    pub health_interval: String,
}

/// Options of `monitor merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub admin: AdminArgs,

    /// The workers' spec (or mapping options) and reference.
    #[command(flatten)]
    pub monitored: MonitoredArgs,

    #[command(flatten)]
    pub windowed: WindowedArgs,

    /// Topic the workers publish pane states and progress to.
    #[arg(
        long,
        env = "MONITOR_PARTIALS_TOPIC",
        default_value = "metrics.partials"
    )]
    pub partials_topic: String,

    #[command(flatten)]
    pub performance: PerformanceArgs,

    /// Kafka consumer group of the merger (one instance).
    #[arg(long, env = "MONITOR_MERGE_GROUP", default_value = "monitor-merge")]
    pub group: String,
}

/// Options of `monitor batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub monitored: MonitoredArgs,

    /// Current data (Parquet) holding the prediction column.
    #[arg(long, env = "MONITOR_CURRENT")]
    pub current: String,

    /// Event-time column of the current data, for --from/--to and --window.
    #[arg(
        long,
        env = "MONITOR_TIME_COLUMN",
        default_value = "lpep_pickup_datetime"
    )]
    pub time_column: String,

    /// Keep current rows at or after this time (2022-02-01 or 2022-02-01T06:00:00).
    #[arg(long, env = "MONITOR_FROM")]
    pub from: Option<String>,

    /// Keep current rows before this time.
    #[arg(long, env = "MONITOR_TO")]
    pub to: Option<String>,

    /// Cut the current data into tumbling windows of this size (for example 1d); without
    /// it the whole selection is one window.
    #[arg(long, env = "MONITOR_BATCH_WINDOW")]
    pub window: Option<String>,
}

/// Options of `monitor profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub monitored: MonitoredArgs,

    /// Where to write the profile (Parquet).
    #[arg(long, env = "MONITOR_PROFILE_OUTPUT")]
    pub output: String,
}

/// What to monitor, from a spec file or from the command-line options.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub mapping: ColumnMapping,
    pub reference: String,
    pub windows: Vec<String>,
    /// Event-time column of batch inputs, when the spec names one.
    pub timestamp: Option<String>,
    /// The target's field in completion events, when the spec names one.
    pub target: Option<String>,
    pub segments: Vec<SegmentSpec>,
    /// Segments with fewer rows get no drift tests (`Spec::segment_min_rows`).
    pub segment_min_rows: u64,
    pub performance: PerformanceSpec,
    pub alerts: Vec<AlertSpec>,
    pub model: Option<ModelSpec>,
}

/// A linear model's features with their coefficients: the scorer's JSON model, or an ONNX
/// linear or logistic regression (run through tract when loaded).
fn model_terms(path: &std::path::Path, features: Option<&[String]>) -> Result<Vec<(String, f64)>> {
    let terms = streamwatch_scorer::load_linear_terms(path, features)
        .map_err(|e| MonitorError::Config(format!("model {}: {e}", path.display())))?;
    Ok(terms.features.into_iter().zip(terms.coefficients).collect())
}

impl Resolved {
    /// `windows` are the command-line windows, used when there is no spec.
    pub fn new(args: &MonitoredArgs, windows: &[String]) -> Result<Self> {
        let mut resolved = Self::without_model(args, windows)?;
        let model = match &resolved.model {
            Some(spec) => Some((PathBuf::from(&spec.path), spec.features.clone())),
            None => args.model.clone().map(|path| {
                let features =
                    (!args.model_features.is_empty()).then(|| args.model_features.clone());
                (path, features)
            }),
        };
        if let Some((path, features)) = model {
            resolved.mapping.explain = model_terms(&path, features.as_deref())?;
        }
        Ok(resolved)
    }

    fn without_model(args: &MonitoredArgs, windows: &[String]) -> Result<Self> {
        match &args.spec {
            Some(path) => {
                let spec = Spec::load(path)?;
                Ok(Self {
                    mapping: crate::spec::mapping(&spec)?,
                    reference: spec.reference.path.clone(),
                    windows: spec.windows.clone(),
                    timestamp: Some(spec.timestamp.clone()),
                    target: spec.target.clone(),
                    segments: spec.segments.clone(),
                    segment_min_rows: spec.segment_min_rows,
                    performance: spec.performance.clone(),
                    alerts: spec.alerts.clone(),
                    model: spec.model.clone(),
                })
            }
            None => Ok(Self {
                mapping: ColumnMapping::from_args(&args.mapping)?,
                reference: args.reference.clone(),
                windows: windows.to_vec(),
                timestamp: None,
                target: None,
                segments: Vec::new(),
                segment_min_rows: 0,
                performance: PerformanceSpec::default(),
                alerts: Vec::new(),
                model: None,
            }),
        }
    }
}
