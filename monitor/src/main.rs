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
        Command::Batch(args) => {
            let report = streamwatch_monitor::report::batch(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
