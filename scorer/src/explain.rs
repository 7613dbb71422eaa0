//! The linear terms of a model, for explainability: per-feature coefficients, the intercept and
//! the link from the linear predictor to the model's output, from either the scorer's JSON model
//! ([`LinearModel`]) or a scikit-learn linear model exported to ONNX ([`crate::onnx`]).
//!
//! A feature's contribution to one prediction is `coefficient × (x − reference mean of x)`, with
//! a missing value counting as 0 (the scorer's `fillna(0)`), in the space of the linear predictor
//! (for a logistic model: the logit).

use std::path::Path;

use crate::model::LinearModel;
use crate::onnx::OnnxLinearModel;
use crate::{Error, Result};

/// How the model's output follows from its linear predictor `z = intercept + Σ cᵢ·xᵢ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// The output is `z` (a regression, e.g. scikit-learn `LinearRegression`).
    Identity,
    /// The output is the positive class's probability `1 / (1 + e^(−z))`, `z` being the logit
    /// (a binary classifier, e.g. scikit-learn `LogisticRegression`; its `decision_function`).
    Logistic,
}

/// A linear model reduced to what explaining it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTerms {
    /// Feature names, in the order of `coefficients` (and of the model's input columns).
    pub features: Vec<String>,
    /// One coefficient per feature, on the linear predictor (for [`Link::Logistic`]: the logit).
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    pub link: Link,
}

impl From<&LinearModel> for LinearTerms {
    fn from(model: &LinearModel) -> Self {
        Self {
            features: model.features().to_vec(),
            coefficients: model.coefficients().to_vec(),
            intercept: model.intercept(),
            link: Link::Identity,
        }
    }
}

impl LinearTerms {
    /// The linear predictor `intercept + Σ cᵢ·xᵢ` (for [`Link::Logistic`], the logit), `x` in
    /// the order of [`LinearTerms::features`], a missing value counting as 0. Summed left to right
    /// from the intercept, as [`LinearModel::predict`] does.
    ///
    /// # Panics
    /// When `x` does not have one value per feature (a caller bug, not a data problem).
    pub fn linear_predictor(&self, x: &[Option<f64>]) -> f64 {
        assert_eq!(
            x.len(),
            self.coefficients.len(),
            "linear_predictor needs one value per feature"
        );
        let mut z = self.intercept;
        for (coefficient, value) in self.coefficients.iter().zip(x) {
            z += coefficient * value.unwrap_or(0.0);
        }
        z
    }

    /// The model's output for one row: the linear predictor through the link (for
    /// [`Link::Logistic`], the probability of the positive class).
    ///
    /// # Panics
    /// When `x` does not have one value per feature.
    pub fn predict(&self, x: &[Option<f64>]) -> f64 {
        let z = self.linear_predictor(x);
        match self.link {
            Link::Identity => z,
            Link::Logistic => logistic(z),
        }
    }

    /// Each feature's contribution `cᵢ × (xᵢ − meanᵢ)` (missing `xᵢ` as 0), on the linear
    /// predictor's scale. They add up to `linear_predictor(x) − linear_predictor(means)`.
    ///
    /// # Panics
    /// When `x` or `reference_means` does not have one value per feature.
    pub fn contributions(&self, x: &[Option<f64>], reference_means: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.coefficients.len(), "one value per feature");
        assert_eq!(
            reference_means.len(),
            self.coefficients.len(),
            "one reference mean per feature"
        );
        self.coefficients
            .iter()
            .zip(x)
            .zip(reference_means)
            .map(|((c, v), mean)| c * (v.unwrap_or(0.0) - mean))
            .collect()
    }
}

/// `1 / (1 + e^(−z))`, computed without overflow for large `|z|`.
pub(crate) fn logistic(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Reads the linear terms of a model file.
///
/// - `*.onnx` (any case): a scikit-learn `LinearRegression` or binary `LogisticRegression`
///   exported by skl2onnx (one float tensor input `[N, n_features]`); see [`OnnxLinearModel`].
///   ONNX files carry no feature names, so `features` must name the input's columns in order,
///   and their count must match the model's. The file is also loaded and run through tract, and
///   its outputs checked against the terms read from the graph.
/// - anything else: the scorer's JSON model ([`LinearModel::load`]); [`Link::Identity`]. When
///   `features` is given it must equal the model's feature list (names and order).
pub fn load_linear_terms(path: &Path, features: Option<&[String]>) -> Result<LinearTerms> {
    let is_onnx = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        return Ok(OnnxLinearModel::load(path, features)?.into_terms());
    }
    let model = LinearModel::load(path)?;
    if let Some(features) = features {
        if features != model.features() {
            return Err(Error::InvalidModel {
                what: format!("file {}", path.display()),
                reason: format!(
                    "its features {:?} differ from the features given {:?} (names and order must match)",
                    model.features(),
                    features
                ),
            });
        }
    }
    Ok(LinearTerms::from(&model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(link: Link) -> LinearTerms {
        LinearTerms {
            features: vec!["a".into(), "b".into()],
            coefficients: vec![2.0, -1.0],
            intercept: 0.5,
            link,
        }
    }

    #[test]
    fn identity_predicts_the_linear_predictor_with_nulls_as_zero() {
        let t = terms(Link::Identity);
        assert_eq!(t.predict(&[Some(1.0), Some(3.0)]), -0.5);
        assert_eq!(t.predict(&[None, Some(3.0)]), -2.5);
        assert_eq!(t.predict(&[None, None]), 0.5);
    }

    #[test]
    fn logistic_predicts_the_probability_of_the_logit() {
        let t = terms(Link::Logistic);
        assert_eq!(t.linear_predictor(&[Some(1.0), Some(3.0)]), -0.5);
        let p = t.predict(&[Some(1.0), Some(3.0)]);
        assert!((p - 1.0 / (1.0 + 0.5f64.exp())).abs() < 1e-15, "{p}");
        assert_eq!(t.predict(&[Some(-0.25), None]), 0.5);
        assert_eq!(logistic(1000.0), 1.0);
        assert_eq!(logistic(-1000.0), 0.0);
    }

    #[test]
    fn contributions_add_up_to_the_difference_from_the_reference() {
        let t = terms(Link::Identity);
        let means = [0.5, 2.0];
        let x = [Some(1.5), None];
        let c = t.contributions(&x, &means);
        assert_eq!(c, vec![2.0, 2.0]);
        let at_means = t.linear_predictor(&means.map(Some));
        assert_eq!(c.iter().sum::<f64>(), t.linear_predictor(&x) - at_means);
    }
}
