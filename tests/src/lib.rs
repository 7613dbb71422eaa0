//! Helpers shared by the end-to-end tests (`tests/`) and the pipeline benchmark
//! (`benches/pipeline.rs`): where the repository and the built binaries are, the stages as
//! child processes with their admin endpoints, topics, and a PostgreSQL database per run.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// The repository (the workspace root).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The folder holding the workspace's binaries: the test or bench executable lives in
/// `deps/` below it (`target/debug` for tests, `target/release` for benches).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The broker and PostgreSQL of the local services (`scripts/services.sh up` sets both).
pub struct Services {
    pub brokers: String,
    pub database_url: String,
}

impl Services {
    /// `KAFKA_BROKERS` and `DATABASE_URL`, when both are set.
    pub fn from_env() -> Option<Self> {
        Some(Self {
            brokers: std::env::var("KAFKA_BROKERS").ok()?,
            database_url: std::env::var("DATABASE_URL").ok()?,
        })
    }
}

/// A stage's binary running as a child process (from the repository root, `RUST_LOG=info`,
/// stdout and stderr into its log file). A stage still running when dropped (a failed test
/// or bench) is killed.
pub struct Stage {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    admin_port: Option<u16>,
}

impl Stage {
    /// Starts `binary` with `args`, logging to `log`.
    pub fn spawn<S: AsRef<OsStr>>(
        name: &'static str,
        binary: &Path,
        args: &[S],
        log: &Path,
    ) -> Result<Self> {
        Self::start(name, binary, args, log, None)
    }

    /// Like [`Self::spawn`], serving the admin endpoints on a free local port
    /// (`--admin-addr`, appended to `args`).
    pub fn spawn_with_admin<S: AsRef<OsStr>>(
        name: &'static str,
        binary: &Path,
        args: &[S],
        log: &Path,
    ) -> Result<Self> {
        Self::start(name, binary, args, log, Some(free_port()?))
    }

    fn start<S: AsRef<OsStr>>(
        name: &'static str,
        binary: &Path,
        args: &[S],
        log: &Path,
        admin_port: Option<u16>,
    ) -> Result<Self> {
        if !binary.exists() {
            let profile = if cfg!(debug_assertions) {
                ""
            } else {
                " --release"
            };
            bail!(
                "{} is missing: run `cargo build --workspace --bins{profile}` first",
                binary.display()
            );
        }
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(binary);
        command.args(args);
        if let Some(port) = admin_port {
            command.args(["--admin-addr", &format!("127.0.0.1:{port}")]);
        }
        let child = command
            .current_dir(repo_root())
            .env("RUST_LOG", "info")
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
            admin_port,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails, with the stage's log, when it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!(
                "{} exited early with {status} (log {}):\n{log}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// Waits until the stage answers 200 on `/readyz` (started with [`Self::spawn_with_admin`]).
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        let port = self
            .admin_port
            .with_context(|| format!("{} has no admin port", self.name))?;
        loop {
            self.check_running()?;
            if let Ok((200, _)) = http_get(port, "/readyz") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready on its admin port; log: {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of the Prometheus sample `name` on the stage's `/metrics` (the first series
    /// of that name); `None` while it is not there or the stage has no admin port.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.admin_port?, "/metrics").ok()?;
        prometheus_value(&body, name)
    }

    /// Sends SIGTERM and waits for a clean exit (status 0) within 30 s.
    pub fn terminate(mut self) -> Result<()> {
        signal(self.pid(), "TERM")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM", self.name);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("{} did not exit within 30 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Stage {
    /// A stage left running by an error is killed.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port free on 127.0.0.1 at the moment.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A minimal HTTP/1.1 GET on 127.0.0.1: (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of the first Prometheus sample line `name{labels} value` or `name value`.
pub fn prometheus_value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A PostgreSQL connection (no TLS), its connection task spawned on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates the database `name` on the server of `base_url`: its URL (same server, user and
/// query parameters).
pub async fn fresh_database(base_url: &str, name: &str) -> Result<String> {
    connect(base_url)
        .await?
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (prefix, _) = base_url
        .rsplit_once('/')
        .context("DATABASE_URL must end with /<database>")?;
    let query = base_url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Ok(format!("{prefix}/{name}{query}"))
}

/// Drops the database `name` (made by [`fresh_database`]), closing its connections.
pub async fn drop_database(base_url: &str, name: &str) -> Result<()> {
    connect(base_url)
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// A topic's partition count from the broker's metadata.
pub fn partition_count(brokers: &str, topic: &str) -> Result<i32> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let metadata = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let topic = metadata.topics().first().context("no topic metadata")?;
    if topic.partitions().is_empty() {
        bail!("topic {} has no partitions", topic.name());
    }
    Ok(topic.partitions().len() as i32)
}

/// Creates `(name, partitions)` topics and waits until the broker's metadata shows them, so
/// the clients started next find every partition.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, p)| NewTopic::new(name, *p, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    for (name, p) in topics {
        let deadline = Instant::now() + Duration::from_secs(10);
        while partition_count(brokers, name).ok() != Some(*p) {
            if Instant::now() > deadline {
                bail!("topic {name} not visible with {p} partitions");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Deletes topics; ones already gone are fine.
pub async fn delete_topics(brokers: &str, topics: &[String]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut failed = Vec::new();
    for result in admin.delete_topics(&names, &AdminOptions::new()).await? {
        if let Err((topic, code)) = result {
            if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                failed.push(format!("{topic}: {code}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("deleting topics: {}", failed.join(", "));
    }
    Ok(())
}

/// The process id of the local broker (Tansu, as `scripts/services.sh` starts it) listening
/// on the first of `brokers`' ports, found in /proc; none when the broker runs elsewhere.
pub fn local_broker_pid(brokers: &str) -> Option<u32> {
    let port = brokers.split(',').next()?.rsplit_once(':')?.1.to_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let pid: u32 = pid.parse().ok()?;
            (cmdline.contains("tansu") && cmdline.contains(&format!(":{port} "))).then_some(pid)
        })
}

/// Sends the signal named `name` (as `kill` knows it: TERM, KILL, STOP, CONT, INT) to `pid`.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid}: {status}");
    }
    Ok(())
}
