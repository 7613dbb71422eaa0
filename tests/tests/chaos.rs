//! Chaos: February 2022 is replayed (at 40,000× real time, about a minute), trips and their
//! completions, into 6-partition topics and monitored twice from the same scored and
//! completions topics (drift and model performance):
//!
//! - the reference: one monitor instance and its sink, left alone;
//! - the scaled-out path: three monitor workers in one consumer group, a merger and a sink,
//!   while the test SIGKILLs and restarts the producer, the scorer, a worker, the merger and
//!   the sink three times each at random moments, adds a fourth worker and removes one
//!   mid-stream, cuts PostgreSQL off from the sink for 30 s (a TCP proxy between them
//!   drops every connection and refuses new ones), and freezes the broker (SIGSTOP) for
//!   `BROKER_PAUSE` when it is the local one: every client's requests hang, the consumer
//!   groups' sessions expire, and everything resumes after SIGCONT.
//!
//! The final metric tables of both databases must be equal row for row (every column but
//! the generation, the revision and the emission and storage times; alerts and model
//! performance included), and the reference's daily row counts must equal the golden ones
//! (no trip lost or counted twice through the restarts).
//!
//! Late events update their windows whatever their lateness (`UPDATE_HORIZON`), so the
//! comparison does not depend on timing; `CHAOS_FAULTS` picks the kinds of faults.
//!
//! Needs KAFKA_BROKERS and DATABASE_URL (scripts/services.sh sets both) and the binaries built
//! next to this test (`cargo build --workspace --bins`). `CHAOS_SEED` repeats a run's moments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use streamwatch_tests::{
    bin_dir, connect, create_topics, drop_database, fresh_database, local_broker_pid, repo_root,
    signal, Services, Stage,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PARTITIONS: i32 = 6;
/// At 40,000× an hour of event time passes in 90 ms, so whether an event is too late for its
/// window would depend on wall-clock hiccups (a rebalance, a busy core) that differ between the
/// two monitoring paths. With a horizon longer than the month every late event still updates
/// its window, and the final tables depend on the data alone.
const UPDATE_HORIZON: &str = "40d";
/// The faults injected unless `CHAOS_FAULTS` says otherwise.
const DEFAULT_FAULTS: &str = "all";
/// Event time runs this many times faster than real time: February in about a minute.
const SPEED: &str = "40000";
/// How long the broker is frozen: longer than the consumer groups' session timeout (6 s).
const BROKER_PAUSE: Duration = Duration::from_secs(10);

/// splitmix64: the moments of the faults, repeatable from the printed seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in [low, high) seconds.
    fn between(&mut self, low: f64, high: f64) -> Duration {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(low + unit * (high - low))
    }
}

/// Forwards TCP connections to PostgreSQL until cut: then it closes every open connection
/// and refuses new ones, as a database that went away.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, watcher) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watcher = watcher.clone();
                if !*watcher.borrow() {
                    continue; // dropped: the connection is refused
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watcher.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { port, up })
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL, and the URL pointed at `port` on
/// 127.0.0.1 instead.
fn through_proxy(url: &str, port: u16) -> Result<(String, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .context("DATABASE_URL has no scheme")?;
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (host, path) = rest
        .split_once('/')
        .context("DATABASE_URL has no database")?;
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let at = if user.is_empty() { "" } else { "@" };
    Ok((
        host,
        format!("{scheme}://{user}{at}127.0.0.1:{port}/{path}"),
    ))
}

/// Every row of the metric tables, as JSON text without the columns that differ between
/// runs by nature (generation, revision, emission and storage times), sorted.
async fn metric_tables(url: &str) -> Result<BTreeMap<&'static str, Vec<String>>> {
    // Alerts are in: a restarted merger takes its rules' streaks up from the alert-state
    // topic instead of firing again, and the revisions that complete a window replace the
    // transitions (and values) its earlier revisions made.
    const TABLES: [&str; 10] = [
        "window_metrics",
        "column_drift",
        "column_quantiles",
        "column_outliers",
        "feature_contributions",
        "segment_drift",
        "segment_column_drift",
        "window_performance",
        "segment_performance",
        "alerts",
    ];
    let client = connect(url).await?;
    let mut tables = BTreeMap::new();
    for table in TABLES {
        let rows = client
            .query(
                &format!(
                    "SELECT (to_jsonb(t) - 'revision' - 'generation' - 'emitted_at' - 'stored_at')::text \
                     FROM {table} t"
                ),
                &[],
            )
            .await
            .with_context(|| format!("reading {table}"))?;
        let mut rows: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        rows.sort();
        tables.insert(table, rows);
    }
    Ok(tables)
}

/// What differs between two sets of tables, briefly.
fn differences(
    expected: &BTreeMap<&'static str, Vec<String>>,
    actual: &BTreeMap<&'static str, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, rows) in expected {
        let other = &actual[table];
        if rows != other {
            // Sets: the performance tables have 100,000 rows and more, too many to scan per row.
            let (rows_set, other_set): (BTreeSet<&String>, BTreeSet<&String>) =
                (rows.iter().collect(), other.iter().collect());
            let missing: Vec<&&String> = rows_set.difference(&other_set).collect();
            let extra: Vec<&&String> = other_set.difference(&rows_set).collect();
            out.push(format!(
                "{table}: {} rows expected, {} stored; {} missing (first: {:?}), {} unexpected (first: {:?})",
                rows.len(),
                other.len(),
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first()
            ));
        }
    }
    out
}

/// The local broker frozen with SIGSTOP until dropped (SIGCONT), also when the test fails
/// meanwhile: later tests need it.
struct BrokerPause(u32);

impl BrokerPause {
    fn start(pid: u32) -> Result<Self> {
        signal(pid, "STOP")?;
        Ok(Self(pid))
    }
}

impl Drop for BrokerPause {
    fn drop(&mut self) {
        let _ = signal(self.0, "CONT");
    }
}

fn kill(stage: Stage) -> Result<()> {
    signal(stage.pid(), "KILL")?;
    drop(stage); // reaps it
    Ok(())
}

struct Run {
    log_dir: std::path::PathBuf,
    restarts: BTreeMap<&'static str, usize>,
}

impl Run {
    /// Starts a stage; the log of each (re)start is kept.
    fn spawn(&mut self, name: &'static str, args: &[String]) -> Result<Stage> {
        let count = self.restarts.entry(name).or_insert(0);
        *count += 1;
        let log = self.log_dir.join(format!("{name}-{count}.log"));
        let binary = match name {
            "reference-monitor" | "merger" => "monitor",
            name if name.starts_with("worker") => "monitor",
            "reference-sink" => "sink",
            other => other,
        };
        Stage::spawn(name, &bin_dir().join(binary), args, &log)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_out_monitors_survive_kills_rebalances_and_outages() -> Result<()> {
    let Some(Services {
        brokers,
        database_url,
    }) = Services::from_env()
    else {
        eprintln!("skipped: set KAFKA_BROKERS and DATABASE_URL (scripts/services.sh up) to run the chaos test");
        return Ok(());
    };
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} repeats the fault moments)");
    let mut random = Random(seed);

    let tag = format!("chaos{}", std::process::id());
    let topic = |name: &str| format!("{tag}.{name}");
    let (trips, completions, scored, partials, metrics, reference_metrics, dlq) = (
        topic("trips"),
        topic("completions"),
        topic("trips.scored"),
        topic("partials"),
        topic("metrics"),
        topic("metrics.reference"),
        topic("deadletter"),
    );
    create_topics(
        &brokers,
        &[
            (&trips, PARTITIONS),
            (&completions, PARTITIONS),
            (&scored, PARTITIONS),
            (&partials, PARTITIONS),
            (&metrics, 1),
            (&reference_metrics, 1),
            (&dlq, 1),
        ],
    )
    .await?;
    let stamp = chrono::Utc::now().timestamp();
    let (reference_db, chaos_db) = (format!("sw_{tag}_ref_{stamp}"), format!("sw_{tag}_{stamp}"));
    let reference_url = fresh_database(&database_url, &reference_db).await?;
    let chaos_url = fresh_database(&database_url, &chaos_db).await?;
    let proxy_port;
    let proxy = {
        let (target, _) = through_proxy(&chaos_url, 0)?;
        let proxy = Proxy::start(target).await?;
        proxy_port = proxy.port;
        proxy
    };
    let (_, proxied_chaos_url) = through_proxy(&chaos_url, proxy_port)?;

    let log_dir = std::env::temp_dir().join(format!("streamwatch-{tag}"));
    std::fs::create_dir_all(&log_dir)?;
    eprintln!("stage logs in {}", log_dir.display());
    let examples = repo_root().join("examples/specs");
    let spec = std::fs::read_to_string(examples.join("taxi.toml"))?
        .replace(r#"windows = ["1d"]"#, r#"windows = ["1d", "1h", "1d/1h"]"#)
        .replace("../../", &format!("{}/", repo_root().display()));
    let spec_path = log_dir.join("taxi.toml");
    std::fs::write(&spec_path, spec)?;
    let spec_arg = spec_path.display().to_string();

    let group = |name: &str| format!("{tag}-{name}");
    let producer_args = strings(&[
        "replay",
        "--file",
        "data/green_tripdata_2022-02.parquet",
        "--from",
        "2022-02-01",
        "--to",
        "2022-03-01",
        "--speed",
        SPEED,
        "--topic",
        &trips,
        "--completions-topic",
        &completions,
        "--brokers",
        &brokers,
    ]);
    let scorer_args = strings(&[
        "run",
        "--brokers",
        &brokers,
        "--group",
        &group("scorer"),
        "--input-topic",
        &trips,
        "--output-topic",
        &scored,
        "--dead-letter-topic",
        &dlq,
        "--model",
        "models/trip-duration-linear.json",
    ]);
    let monitor_args = |group_name: &str, output: &str, extra: &[&str]| {
        let mut args = strings(&[
            "run",
            "--brokers",
            &brokers,
            "--group",
            &group(group_name),
            "--input-topic",
            &scored,
            "--output-topic",
            output,
            "--dead-letter-topic",
            &dlq,
            "--spec",
            &spec_arg,
            "--idle-timeout",
            "3s",
            "--update-horizon",
            UPDATE_HORIZON,
            "--completions-topic",
            &completions,
        ]);
        args.extend(strings(extra));
        args
    };
    let reference_monitor_args = monitor_args("reference-monitor", &reference_metrics, &[]);
    let worker_args = monitor_args("workers", &metrics, &["--partials-topic", &partials]);
    let merger_args = strings(&[
        "merge",
        "--brokers",
        &brokers,
        "--group",
        &group("merger"),
        "--partials-topic",
        &partials,
        "--input-topic",
        &scored,
        "--output-topic",
        &metrics,
        "--dead-letter-topic",
        &dlq,
        "--spec",
        &spec_arg,
        "--update-horizon",
        UPDATE_HORIZON,
        "--completions-topic",
        &completions,
    ]);
    let sink_args = |group_name: &str, topic: &str, url: &str| {
        strings(&[
            "run",
            "--brokers",
            &brokers,
            "--group",
            &group(group_name),
            "--topic",
            topic,
            "--dead-letter-topic",
            &dlq,
            "--database-url",
            url,
            "--retry-max-ms",
            "2000",
        ])
    };
    let reference_sink_args = sink_args("reference-sink", &reference_metrics, &reference_url);
    let chaos_sink_args = sink_args("sink", &metrics, &proxied_chaos_url);

    let mut run = Run {
        log_dir: log_dir.clone(),
        restarts: BTreeMap::new(),
    };
    let mut reference_sink = run.spawn("reference-sink", &reference_sink_args)?;
    let mut reference_monitor = run.spawn("reference-monitor", &reference_monitor_args)?;
    let mut sink = run.spawn("sink", &chaos_sink_args)?;
    let mut merger = run.spawn("merger", &merger_args)?;
    let mut workers = vec![
        run.spawn("worker-1", &worker_args)?,
        run.spawn("worker-2", &worker_args)?,
        run.spawn("worker-3", &worker_args)?,
    ];
    let mut scorer = run.spawn("scorer", &scorer_args)?;
    let mut producer = run.spawn("producer", &producer_args)?;

    // The faults, at random moments of the replay (seconds from its start).
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        Kill(&'static str),
        AddWorker,
        RemoveWorker,
        DatabaseDown,
        DatabaseUp,
        BrokerDown,
        BrokerUp,
    }
    let mut faults: Vec<(Duration, Fault)> = Vec::new();
    // The producer replays from the start after each kill: kill it early, three times.
    let mut at = Duration::ZERO;
    for _ in 0..3 {
        at += random.between(2.0, 6.0);
        faults.push((at, Fault::Kill("producer")));
    }
    for stage in ["scorer", "worker-1", "merger", "sink"] {
        for _ in 0..3 {
            faults.push((random.between(3.0, 70.0), Fault::Kill(stage)));
        }
    }
    faults.push((random.between(15.0, 25.0), Fault::AddWorker));
    faults.push((random.between(35.0, 45.0), Fault::RemoveWorker));
    let down = random.between(10.0, 40.0);
    faults.push((down, Fault::DatabaseDown));
    faults.push((down + Duration::from_secs(30), Fault::DatabaseUp));
    let broker_pid = local_broker_pid(&brokers);
    match &broker_pid {
        Some(_) => {
            let down = random.between(20.0, 55.0);
            let up = down + BROKER_PAUSE;
            // A stage (re)started while the broker is frozen fails its start-up connectivity
            // check and exits: processes start and stop only while it runs.
            let frozen = down.saturating_sub(Duration::from_secs(1))..up + Duration::from_secs(3);
            for (moment, fault) in &mut faults {
                let starts_or_stops = !matches!(fault, Fault::DatabaseDown | Fault::DatabaseUp);
                if starts_or_stops && frozen.contains(moment) {
                    *moment += frozen.end - down;
                }
            }
            faults.push((down, Fault::BrokerDown));
            faults.push((up, Fault::BrokerUp));
        }
        None => eprintln!("the broker is not a local Tansu process: it is not frozen"),
    }
    // `CHAOS_FAULTS`: which kinds to inject (comma-separated: producer, scorer, worker, merger,
    // sink, rebalance, database, broker; `all` or `none`).
    let kinds = std::env::var("CHAOS_FAULTS").unwrap_or_else(|_| DEFAULT_FAULTS.to_owned());
    let wanted = |fault: &Fault| {
        let kind = match fault {
            Fault::Kill(stage) => stage.trim_end_matches("-1"),
            Fault::AddWorker | Fault::RemoveWorker => "rebalance",
            Fault::DatabaseDown | Fault::DatabaseUp => "database",
            Fault::BrokerDown | Fault::BrokerUp => "broker",
        };
        kinds == "all" || kinds.split(',').any(|k| k.trim() == kind)
    };
    faults.retain(|(_, fault)| wanted(fault));
    faults.sort_by_key(|fault| fault.0);
    eprintln!("faults: {faults:?}");

    let started = Instant::now();
    let mut broker_pause = None;
    for (moment, fault) in faults {
        while started.elapsed() < moment {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{:>6.1} s: {fault:?}", started.elapsed().as_secs_f64());
        match fault {
            Fault::Kill("producer") => {
                kill(producer)?;
                producer = run.spawn("producer", &producer_args)?;
            }
            Fault::Kill("scorer") => {
                kill(scorer)?;
                scorer = run.spawn("scorer", &scorer_args)?;
            }
            Fault::Kill("worker-1") => {
                kill(workers.remove(0))?;
                workers.insert(0, run.spawn("worker-1", &worker_args)?);
            }
            Fault::Kill("merger") => {
                kill(merger)?;
                merger = run.spawn("merger", &merger_args)?;
            }
            Fault::Kill(_) => {
                kill(sink)?;
                sink = run.spawn("sink", &chaos_sink_args)?;
            }
            Fault::AddWorker => workers.push(run.spawn("worker-4", &worker_args)?),
            Fault::RemoveWorker => workers.remove(1).terminate()?,
            Fault::DatabaseDown => proxy.set_up(false),
            Fault::DatabaseUp => proxy.set_up(true),
            Fault::BrokerDown => {
                let pid = broker_pid.context("broker faults need its pid")?;
                broker_pause.replace(BrokerPause::start(pid)?);
            }
            Fault::BrokerUp => drop(broker_pause.take()),
        }
        for stage in [
            &mut reference_sink,
            &mut reference_monitor,
            &mut scorer,
            &mut merger,
            &mut sink,
        ] {
            stage.check_running()?;
        }
        for worker in &mut workers {
            worker.check_running()?;
        }
    }

    // The last producer run replays the whole month.
    let deadline = Instant::now() + Duration::from_secs(180);
    while producer.check_running().is_ok() {
        if Instant::now() > deadline {
            bail!("the producer did not finish its replay");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(producer.log())?;
    assert!(
        log.contains("69376"),
        "the last replay sent February: {log}"
    );
    eprintln!("{:>6.1} s: replay done", started.elapsed().as_secs_f64());

    // Both databases converge: equal tables, and every February day in the reference.
    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("tests/golden/feb-2022-daily.json"),
    )?)?;
    let golden_rows: BTreeMap<String, u64> = goldens["cases"]
        .as_array()
        .context("golden cases")?
        .iter()
        .map(|case| {
            (
                case["name"].as_str().unwrap_or_default().to_owned(),
                case["expected"]["row_count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let reference_client = connect(&reference_url).await?;
    loop {
        for stage in [
            &mut reference_sink,
            &mut reference_monitor,
            &mut scorer,
            &mut merger,
            &mut sink,
        ] {
            stage.check_running()?;
        }
        let daily: BTreeMap<String, u64> = reference_client
            .query(
                "SELECT to_char(window_start, 'YYYY-MM-DD'), row_count FROM window_metrics \
                 WHERE window_kind = 'tumbling' AND window_size_seconds = 86400",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect();
        let expected = metric_tables(&reference_url).await?;
        let actual = metric_tables(&chaos_url).await?;
        let diff = differences(&expected, &actual);
        if daily == golden_rows && diff.is_empty() {
            eprintln!(
                "{:>6.1} s: equal: {}",
                started.elapsed().as_secs_f64(),
                expected
                    .iter()
                    .map(|(t, rows)| format!("{t} {}", rows.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "not converged (logs in {}): daily rows {daily:?} vs golden {golden_rows:?}; {}",
                log_dir.display(),
                diff.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    for stage in [reference_sink, reference_monitor, scorer, merger, sink] {
        stage.terminate()?;
    }
    for worker in workers {
        worker.terminate()?;
    }
    drop_database(&database_url, &reference_db).await?;
    drop_database(&database_url, &chaos_db).await?;
    let _ = std::fs::remove_dir_all(Path::new(&log_dir));
    Ok(())
}
