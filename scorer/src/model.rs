//! The linear trip-duration model: its JSON file and the bit-exact prediction.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Name written into model files this crate trains.
pub const MODEL_NAME: &str = "trip-duration-linear";
/// What the model predicts: the trip duration in minutes.
pub const TARGET: &str = "duration_min";
/// The course's features, in the order of the coefficients.
pub const FEATURES: [&str; 6] = [
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "total_amount",
    "PULocationID",
    "DOLocationID",
];

/// Where a model came from: the data it was fitted on and how well it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// File name of the training data.
    pub input: String,
    pub input_rows: u64,
    /// How `duration_min` is computed from the source columns.
    pub target_definition: String,
    /// Which rows are kept before the split.
    pub filter: String,
    pub kept_rows: u64,
    /// The first `train_rows` kept rows (file order) are fitted; the rest are the reference.
    pub train_rows: u64,
    pub validation_rows: u64,
    pub null_features: String,
    pub method: String,
    /// How `version` is derived.
    pub version_scheme: String,
    pub mae_train: f64,
    pub mae_validation: f64,
}

/// A linear model `intercept + sum(coefficients[i] * features[i])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    name: String,
    version: String,
    target: String,
    features: Vec<String>,
    coefficients: Vec<f64>,
    intercept: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    training: Option<TrainingInfo>,
}

impl LinearModel {
    /// Builds a model of the course's target, checking it the way [`LinearModel::load`] does.
    pub fn new(
        version: impl Into<String>,
        features: Vec<String>,
        coefficients: Vec<f64>,
        intercept: f64,
        training: Option<TrainingInfo>,
    ) -> Result<Self> {
        let model = Self {
            name: MODEL_NAME.to_owned(),
            version: version.into(),
            target: TARGET.to_owned(),
            features,
            coefficients,
            intercept,
            training,
        };
        model.validate("being built")?;
        Ok(model)
    }

    /// Reads and checks a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            action: "read model file",
            path: path.to_owned(),
            source,
        })?;
        let model: Self = serde_json::from_slice(&bytes).map_err(|source| Error::ModelJson {
            path: path.to_owned(),
            source,
        })?;
        model.validate(&format!("file {}", path.display()))?;
        Ok(model)
    }

    /// Writes the model as pretty JSON (floats in shortest round-trip form).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut json = serde_json::to_vec_pretty(self).map_err(|source| Error::ModelJson {
            path: path.to_owned(),
            source,
        })?;
        json.push(b'\n');
        std::fs::write(path, json).map_err(|source| Error::Io {
            action: "write model file",
            path: path.to_owned(),
            source,
        })
    }

    fn validate(&self, what: &str) -> Result<()> {
        let invalid = |reason: String| {
            Err(Error::InvalidModel {
                what: what.to_owned(),
                reason,
            })
        };
        if self.version.is_empty() || self.version.chars().any(char::is_control) {
            return invalid(format!(
                "version {:?} must be non-empty printable text",
                self.version
            ));
        }
        if self.features.is_empty() {
            return invalid("it has no features".into());
        }
        if self.features.len() != self.coefficients.len() {
            return invalid(format!(
                "{} features but {} coefficients",
                self.features.len(),
                self.coefficients.len()
            ));
        }
        for (i, name) in self.features.iter().enumerate() {
            if self.features[..i].contains(name) {
                return invalid(format!("feature {name:?} is listed twice"));
            }
        }
        if let Some((name, value)) = self
            .features
            .iter()
            .zip(&self.coefficients)
            .find(|(_, c)| !c.is_finite())
        {
            return invalid(format!("coefficient of {name:?} is {value}"));
        }
        if !self.intercept.is_finite() {
            return invalid(format!("intercept is {}", self.intercept));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Feature names in coefficient order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    pub fn training(&self) -> Option<&TrainingInfo> {
        self.training.as_ref()
    }

    /// The prediction for one row, `x` in the order of [`LinearModel::features`], a missing
    /// value counting as 0.0 (the course fills nulls with 0).
    ///
    /// Bit-exact contract shared with the Python golden files: `p = intercept`, then
    /// `p = p + coefficients[i] * x[i]` for i = 0, 1, ... in f64, never fused or reordered.
    ///
    /// # Panics
    /// When `x` does not have one value per feature (a caller bug, not a data problem).
    pub fn predict(&self, x: &[Option<f64>]) -> f64 {
        assert_eq!(
            x.len(),
            self.coefficients.len(),
            "predict needs one value per feature"
        );
        let mut p = self.intercept;
        for (coefficient, value) in self.coefficients.iter().zip(x) {
            p += coefficient * value.unwrap_or(0.0);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(coefficients: Vec<f64>, intercept: f64) -> LinearModel {
        let features = (0..coefficients.len()).map(|i| format!("f{i}")).collect();
        LinearModel::new("test.1", features, coefficients, intercept, None).unwrap()
    }

    #[test]
    fn predict_adds_left_to_right_from_the_intercept() {
        // Summing in another order, or from the last term, gives 0.0 or 2.0 here.
        let m = model(vec![1.0, 1.0, 1.0], 1e16);
        assert_eq!(m.predict(&[Some(1.0), Some(1.0), Some(-1e16)]), 0.0);
        let m = model(vec![1.0, 1.0], -1e16);
        assert_eq!(m.predict(&[Some(1e16), Some(1.0)]), 1.0);
        // No fused multiply-add: 0.1 * 10.0 rounds to exactly 1.0 before the addition.
        let m = model(vec![0.1], -1.0);
        assert_eq!(m.predict(&[Some(10.0)]), 0.0);
        assert_ne!(0.1f64.mul_add(10.0, -1.0), 0.0);
    }

    #[test]
    fn predict_treats_missing_values_as_zero() {
        let m = model(vec![2.0, 3.0], 0.5);
        assert_eq!(m.predict(&[None, Some(1.0)]), 3.5);
        assert_eq!(m.predict(&[None, None]), 0.5);
    }

    #[test]
    fn predict_matches_the_course_model_on_one_trip() {
        let coefficients = vec![
            -0.013579399518018597,
            -1.0880067218462571e-05,
            0.4128882540093592,
            0.19890292342197644,
            -0.005173405959499887,
            0.0021842771145854853,
        ];
        let m = model(coefficients.clone(), 4.4360188162808445);
        let x = [1.0, 2.5, 11.0, 13.3, 74.0, 42.0];
        let mut expected = 4.4360188162808445;
        for (c, v) in coefficients.iter().zip(x) {
            expected += c * v;
        }
        let got = m.predict(&x.map(Some));
        assert_eq!(got.to_bits(), expected.to_bits());
    }

    #[test]
    fn load_rejects_inconsistent_models() {
        let dir = std::env::temp_dir().join(format!("scorer-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.json");
        std::fs::write(
            &path,
            r#"{"name":"m","version":"1","target":"t","features":["a","b"],"coefficients":[1.0],"intercept":0.0}"#,
        )
        .unwrap();
        let error = LinearModel::load(&path).unwrap_err().to_string();
        assert!(error.contains("2 features but 1 coefficients"), "{error}");
        assert!(error.contains("bad.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn save_then_load_round_trips_exactly() {
        let dir = std::env::temp_dir().join(format!("scorer-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.json");
        let m = model(
            vec![0.1 + 0.2, -1.0880067218462571e-05, 1e-300],
            4.4360188162808445,
        );
        m.save(&path).unwrap();
        let back = LinearModel::load(&path).unwrap();
        assert_eq!(back, m);
        for (a, b) in back.coefficients().iter().zip(m.coefficients()) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
