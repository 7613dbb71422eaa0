//! Why a drift test has no score for a pair of samples.

/// The reason a test cannot be evaluated: Evidently (or the scipy function it
/// calls) raises an exception for such input. The monitor reports the column
/// as untestable; a NaN score is never drift.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatTestError {
    /// The reference or the current sample is empty after cleaning.
    #[error("no values in the reference or current sample")]
    EmptySample,
    /// Evidently or scipy rejects this input; the message says why.
    #[error("{0}")]
    Rejected(&'static str),
}
