//! The producer stage: replays TLC trip files (or live JSON from stdin and HTTP) into Kafka as
//! trip events.
//!
//! `source` turns inputs into events without touching Kafka; `publish` sends them (a replay
//! through `replay_output`), paces a replay by event time and reports what was delivered;
//! `resume` finds where an interrupted replay left off; `ingest` runs live mode, where every
//! source feeds one validation and publishing loop.

pub mod config;
pub mod error;
pub mod ingest;
pub mod publish;
pub mod replay_output;
pub mod resume;
pub mod source;

pub use error::{Error, Result};

use config::{Cli, Command};

/// Runs the chosen subcommand until it finishes or SIGINT/SIGTERM arrives.
pub async fn run(cli: Cli) -> Result<()> {
    let shutdown = streamwatch_common::shutdown::on_signals();
    match cli.command {
        Command::Replay(args) => publish::replay(args, shutdown).await,
        Command::Live(args) => ingest::live(args, shutdown).await,
    }
}
