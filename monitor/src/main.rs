use clap::Parser;
use streamwatch_monitor::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamwatch_common::telemetry::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let shutdown = streamwatch_common::shutdown::on_signals();
            streamwatch_monitor::service::run(*args, shutdown).await?;
        }
        Command::Merge(args) => {
            let shutdown = streamwatch_common::shutdown::on_signals();
            streamwatch_monitor::merge::run(*args, shutdown).await?;
        }
        Command::Profile(args) => {
            let (path, columns) = streamwatch_monitor::report::profile(&args).await?;
            println!("profile of {columns} columns written to {path}");
        }
        Command::Batch(args) => {
            let report = streamwatch_monitor::report::batch(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
