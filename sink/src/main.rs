use clap::Parser;
use streamwatch_sink::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamwatch_common::telemetry::init_tracing();
    match Cli::parse().command {
        Command::Run(args) => {
            streamwatch_sink::run(*args, streamwatch_common::shutdown::on_signals()).await?;
        }
        Command::Migrate(args) => {
            println!("{}", streamwatch_sink::migrate(&args.database).await?);
        }
    }
    Ok(())
}
