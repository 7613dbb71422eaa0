//! The SQL migrations in the workspace's `migrations/` folder, embedded in the binary.

use crate::service::MetricStore;
use crate::{Error, Result};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Serialises sinks starting at the same time on one database (any constant shared by them).
const MIGRATION_LOCK: i64 = 0x7374_7265_616d_7377; // "streamsw"

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run, as `V<version>__<name>`.
    pub applied: Vec<String>,
    /// The newest migration in the database after the run.
    pub current: Option<String>,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.as_deref().unwrap_or("none");
        if self.applied.is_empty() {
            write!(f, "database is up to date (at {current})")
        } else {
            write!(f, "applied {} (now at {current})", self.applied.join(", "))
        }
    }
}

/// The names of the embedded migrations, oldest first.
pub fn embedded_names() -> Vec<String> {
    let mut migrations = embedded::migrations::runner().get_migrations().clone();
    // In version order (V10 after V9), as refinery applies them.
    migrations.sort_by_key(|m| m.version());
    migrations
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect()
}

/// Applies the embedded migrations that the database lacks, under an advisory lock so that
/// two sinks starting together do not both run them.
pub async fn apply(store: &MetricStore) -> Result<MigrationReport> {
    let mut client = store.client().await?;
    let lock_error = |what: &'static str| {
        move |source| Error::Query {
            target: store.target().to_owned(),
            what,
            source,
        }
    };
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(lock_error("taking the migration lock"))?;
    let runner = embedded::migrations::runner();
    let pg: &mut tokio_postgres::Client = &mut client;
    let outcome = runner.run_async(pg).await;
    let last = match &outcome {
        Ok(_) => runner.get_last_applied_migration_async(pg).await,
        Err(_) => Ok(None),
    };
    // Unlock before reporting, even after a failed migration, so that the connection returns
    // to the pool clean.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(lock_error("releasing the migration lock"))?;
    let migration_error = |source| Error::Migration {
        target: store.target().to_owned(),
        source,
    };
    let report = outcome.map_err(migration_error)?;
    let current = last.map_err(migration_error)?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| format!("V{}__{}", m.version(), m.name()))
            .collect(),
        current: current.map(|m| format!("V{}__{}", m.version(), m.name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_are_embedded_in_version_order() {
        let names = embedded_names();
        assert_eq!(names.first().map(String::as_str), Some("V1__metrics"));
        assert_eq!(
            names.last().map(String::as_str),
            Some("V11__late_event_index")
        );
    }

    #[test]
    fn report_says_what_happened() {
        let report = MigrationReport {
            applied: vec!["V1__metrics".into()],
            current: Some("V1__metrics".into()),
        };
        assert_eq!(
            report.to_string(),
            "applied V1__metrics (now at V1__metrics)"
        );
        let report = MigrationReport {
            applied: vec![],
            current: Some("V1__metrics".into()),
        };
        assert_eq!(
            report.to_string(),
            "database is up to date (at V1__metrics)"
        );
    }
}
