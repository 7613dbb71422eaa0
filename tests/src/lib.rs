//! Helpers shared by the end-to-end tests (`tests/`) and the pipeline benchmark
//! (`benches/pipeline.rs`): where the repository and the built binaries are, the stages as
//! child processes with their admin endpoints, and a PostgreSQL database per run.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
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
