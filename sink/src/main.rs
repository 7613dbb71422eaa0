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
        Command::Report(args) => {
            let summary = streamwatch_sink::report::write(&args).await?;
            // With `--output -` the page itself is on standard output.
            if args.output.as_os_str() == "-" {
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
        }
    }
    Ok(())
}
