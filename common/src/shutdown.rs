use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM; stages stop consuming,
/// flush and commit when it fires.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "could not install the SIGTERM handler");
                    return;
                }
            };
        let signal = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        // Cancel before logging: a log line must never stand between a signal and shutdown.
        fired.cancel();
        tracing::info!(signal, "shutting down");
    });
    token
}
