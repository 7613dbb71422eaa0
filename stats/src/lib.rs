//! Streaming-friendly re-implementation of Evidently 0.7.23's legacy drift
//! statistics (with scipy 1.17.1's numerics) on count representations.
//!
//! A sample is a [`Distribution`]: its sorted distinct values and their counts,
//! which the monitor keeps exactly and can merge and subtract per window.
//! Every statistic works directly on two distributions, by linear merges of the
//! sorted values (a reference distribution caches what it reuses across
//! windows), and reproduces Evidently / scipy to 1e-12 relative error or
//! better, most of them bit for bit (see the project's Evidently parity note,
//! `tests/scipy_parity.rs` and `tests/evidently_family.rs`):
//!
//! * [`ks_2samp`] / [`ks_2samp_pvalue`] (`scipy.stats.ks_2samp`, exact and asymptotic),
//! * [`chisquare_pvalue`], [`z_test_pvalue`] (Evidently's formulas),
//! * [`wasserstein_normed`], [`jensen_shannon`], [`jensen_shannon_binned`],
//! * [`psi`], [`kl_div`], [`hellinger`], [`energy_distance`],
//! * [`anderson_ksamp_pvalue`], [`cramer_von_mises_pvalue`],
//!   [`mann_whitney_u_pvalue`], [`t_test_pvalue`], [`epps_singleton_pvalue`],
//!   [`fisher_exact_pvalue`], [`g_test_pvalue`],
//! * the permutation tests [`tvd_pvalue`] and [`empirical_mmd_pvalue`]
//!   (numpy's MT19937 replayed; see their notes on raw order and seeds),
//! * [`StatTest`]: Evidently's registry (names, column types, thresholds,
//!   drift rules) and [`default_stattest`] for its default choice,
//! * [`special`]: the scipy special functions behind them.

#![warn(missing_docs)]

mod anderson;
mod binned;
mod chisquare;
mod cvm;
mod dd;
mod distribution;
mod energy;
mod epps;
mod error;
mod fisher;
mod gtest;
mod hellinger;
mod jensenshannon;
mod ks;
mod mannwhitney;
mod mmd;
mod permutation;
mod selection;
pub mod special;
mod sum;
mod ttest;
mod wasserstein;
mod ztest;

pub use anderson::anderson_ksamp_pvalue;
pub use binned::{kl_div, psi};
pub use chisquare::chisquare_pvalue;
pub use cvm::cramer_von_mises_pvalue;
pub use distribution::{distinct_union, Distribution, DistributionError};
pub use energy::energy_distance;
pub use epps::epps_singleton_pvalue;
pub use error::StatTestError;
pub use fisher::{fisher_exact_2x2, fisher_exact_pvalue};
pub use gtest::g_test_pvalue;
pub use hellinger::hellinger;
pub use jensenshannon::{jensen_shannon, jensen_shannon_binned};
pub use ks::{ks_2samp, ks_2samp_pvalue, KsResult};
pub use mannwhitney::mann_whitney_u_pvalue;
pub use mmd::{
    empirical_mmd_permutations, empirical_mmd_pvalue, empirical_mmd_statistic, MmdPermutations,
    MMD_MAX_DISTINCT,
};
pub use permutation::{total_variation_distance, tvd_pvalue};
pub use selection::{default_stattest, ColumnType, ScoreKind, StatTest, StatTestResult, MMD_SEED};
pub use sum::pairwise_sum;
pub use ttest::t_test_pvalue;
pub use wasserstein::{wasserstein_distance, wasserstein_normed};
pub use ztest::z_test_pvalue;
