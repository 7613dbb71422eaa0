use anyhow::Context;
use clap::Parser;
use streamwatch_common::{shutdown, telemetry};
use streamwatch_scorer::config::{Cli, Command, RunArgs, TrainArgs};
use streamwatch_scorer::{service, train, LinearModel};

fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    match Cli::parse().command {
        Command::Train(args) => run_train(&args),
        Command::ScoreFile(args) => {
            let model = LinearModel::load(&args.model.path)?;
            let rows = streamwatch_scorer::score_file(&model, &args.input, &args.output)
                .with_context(|| format!("scoring {}", args.input.display()))?;
            tracing::info!(rows, output = %args.output.display(), model_version = model.version(), "file scored");
            Ok(())
        }
        Command::Run(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(run_service(*args)),
    }
}

fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    let trained = train::train_and_write(
        &args.input,
        args.train_rows,
        &args.model_out,
        &args.reference_out,
    )?;
    let model = &trained.model;
    println!(
        "model {} written to {}",
        model.version(),
        args.model_out.display()
    );
    println!(
        "reference: {} rows written to {}",
        trained.reference.num_rows(),
        args.reference_out.display()
    );
    if let Some(info) = model.training() {
        println!(
            "rows: {} in file, {} kept, {} trained on",
            trained.input_rows, info.kept_rows, info.train_rows
        );
        println!(
            "MAE: train {:.6}, validation {:.6}",
            info.mae_train, info.mae_validation
        );
    }
    match train::compare_with_course(model, &args.input, args.train_rows) {
        Some(rows) => {
            println!(
                "{:<16} {:>24} {:>24} {:>10}",
                "term", "this fit", "course", "rel. diff"
            );
            for (name, ours, course, relative) in rows {
                println!("{name:<16} {ours:>24e} {course:>24e} {relative:>10.2e}");
            }
        }
        None => {
            for (name, value) in model.features().iter().zip(model.coefficients()) {
                println!("{name:<16} {value:>24e}");
            }
            println!("{:<16} {:>24e}", "intercept", model.intercept());
        }
    }
    Ok(())
}

async fn run_service(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signals();
    let readiness = telemetry::Readiness::default();
    let model = LinearModel::load(&args.model.path)?;
    telemetry::serve_admin(
        service::STAGE,
        &args.admin,
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    service::run(&args, model, shutdown.clone(), readiness).await?;
    shutdown.cancel();
    Ok(())
}
