//! Bad configuration and bad files fail fast with a message naming what is wrong.
//! These run the real binaries and need no services: the addresses are unreachable on
//! purpose.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use streamwatch_tests::{bin_dir, repo_root};

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs a stage that must fail; returns its stderr.
fn fails(name: &str, args: &[&str]) -> String {
    let started = Instant::now();
    let output = Command::new(binary(name))
        .args(args)
        .current_dir(repo_root())
        .env_remove("KAFKA_BROKERS")
        .env_remove("DATABASE_URL")
        .env("KAFKA_CONNECT_TIMEOUT_SECONDS", "2")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{name} {args:?} should fail");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{name} took too long to give up"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unreachable_broker_is_named() {
    for (stage, args) in [
        ("monitor", vec!["run", "--brokers", "127.0.0.1:1"]),
        ("scorer", vec!["run", "--brokers", "127.0.0.1:1"]),
        (
            "producer",
            vec![
                "replay",
                "--file",
                "data/green_tripdata_2022-02.parquet",
                "--limit",
                "5",
                "--brokers",
                "127.0.0.1:1",
            ],
        ),
    ] {
        let stderr = fails(stage, &args);
        assert!(stderr.contains("127.0.0.1:1"), "{stage}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("unreachable"),
            "{stage}: {stderr}"
        );
    }
}

#[test]
fn unreachable_database_is_named_without_its_password() {
    let stderr = fails(
        "sink",
        &[
            "migrate",
            "--database-url",
            "postgres://postgres:secret@127.0.0.1:1/streamwatch",
        ],
    );
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[test]
fn missing_columns_are_named() {
    // The raw February file has no prediction: the monitor names the column and the file.
    let stderr = fails(
        "monitor",
        &["batch", "--current", "data/green_tripdata_2022-02.parquet"],
    );
    assert!(
        stderr.contains("\"prediction\"") && stderr.contains("green_tripdata_2022-02.parquet"),
        "{stderr}"
    );
    // The zone lookup is no trip file: the producer says it cannot be read as Parquet.
    let stderr = fails(
        "producer",
        &[
            "replay",
            "--file",
            "data/taxi_zone_lookup.csv",
            "--brokers",
            "127.0.0.1:1",
        ],
    );
    assert!(stderr.contains("taxi_zone_lookup.csv"), "{stderr}");
    // A reference without the mapped columns.
    let stderr = fails(
        "monitor",
        &[
            "batch",
            "--reference",
            "data/green_tripdata_2022-01.parquet",
            "--current",
            "data/reference.parquet",
        ],
    );
    assert!(
        stderr.contains("reference") && stderr.contains("\"prediction\""),
        "{stderr}"
    );
}
