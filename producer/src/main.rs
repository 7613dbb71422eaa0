use clap::Parser;
use streamwatch_producer::config::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamwatch_common::telemetry::init_tracing();
    streamwatch_producer::run(Cli::parse()).await?;
    Ok(())
}
