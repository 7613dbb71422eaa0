//! Streaming-friendly re-implementation of Evidently 0.7.23's legacy drift
//! statistics (with scipy 1.17.1's numerics) on count representations.
//!
//! A sample is a [`Distribution`]: its sorted distinct values and their counts,
//! which the monitor keeps exactly and can merge and subtract per window.
//! Every statistic works directly on two distributions, by linear merges of the
//! sorted values (a reference distribution caches what it reuses across
//! windows), and reproduces Evidently / scipy to 1e-12 relative error or
//! better, most of them bit for bit (see the project's Evidently parity note
//! and `tests/scipy_parity.rs`):
//!
//! * [`ks_2samp`] / [`ks_2samp_pvalue`] (`scipy.stats.ks_2samp`, exact and asymptotic),
//! * [`chisquare_pvalue`], [`z_test_pvalue`] (Evidently's formulas),
//! * [`wasserstein_normed`], [`jensen_shannon`], [`jensen_shannon_binned`],
//! * [`default_stattest`] and [`StatTest`] for Evidently's default choice,
//! * [`special`]: the scipy special functions behind them.

#![warn(missing_docs)]

mod chisquare;
mod dd;
mod distribution;
mod jensenshannon;
mod ks;
mod selection;
pub mod special;
mod sum;
mod wasserstein;
mod ztest;

pub use chisquare::chisquare_pvalue;
pub use distribution::{distinct_union, Distribution, DistributionError};
pub use jensenshannon::{jensen_shannon, jensen_shannon_binned};
pub use ks::{ks_2samp, ks_2samp_pvalue, KsResult};
pub use selection::{default_stattest, ColumnType, StatTest};
pub use wasserstein::{wasserstein_distance, wasserstein_normed};
pub use ztest::z_test_pvalue;
