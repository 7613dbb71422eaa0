//! The monitoring spec (`streamwatch_common::spec`) as the monitor's column mapping.

use crate::mapping::{ColumnMapping, ColumnTest, Role};
use crate::Result;

pub use streamwatch_common::spec::Spec;

/// The column mapping a spec describes.
pub fn mapping(spec: &Spec) -> Result<ColumnMapping> {
    let mut drift_columns = vec![(spec.prediction.clone(), Role::Prediction)];
    drift_columns.extend(spec.numerical.iter().map(|c| (c.clone(), Role::Numerical)));
    drift_columns.extend(
        spec.categorical
            .iter()
            .map(|c| (c.clone(), Role::Categorical)),
    );
    let tests = spec
        .columns
        .iter()
        .map(|(column, settings)| {
            let test = ColumnTest::parse(column, settings.stattest.as_deref(), settings.threshold)?;
            Ok((column.clone(), test))
        })
        .collect::<Result<_>>()?;
    let mapping = ColumnMapping {
        monitor_name: spec.name.clone(),
        drift_columns,
        quantiles: spec
            .quantiles
            .iter()
            .map(|q| (q.column.clone(), q.q))
            .collect(),
        drift_share: spec.drift_share,
        outlier_quantiles: (spec.outlier_quantiles[0], spec.outlier_quantiles[1]),
        tests,
        ignored: spec.ignore.clone(),
        explain: Vec::new(),
    };
    mapping.check_tests()?;
    Ok(mapping)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MINIMAL: &str = r#"
name = "m"
prediction = "p"
numerical = ["a"]
categorical = ["b"]
[reference]
path = "ref.parquet"
"#;

    #[test]
    fn the_shipped_examples_parse() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/specs");
        let mut found = 0;
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let counted = mapping(&spec).unwrap().counted_columns();
                for segment in &spec.segments {
                    let mut segmenter = crate::segments::Segmenter::new(segment, &counted).unwrap();
                    assert_ne!(
                        segmenter.classify(Some(74.0)),
                        segmenter.classify(None),
                        "{}",
                        segment.name
                    );
                }
                found += 1;
            }
        }
        assert!(found >= 2, "the taxi spec and a second data set's spec");
    }

    #[test]
    fn unknown_tests_are_rejected_when_mapping() {
        let text = format!("{MINIMAL}\n[columns.a]\nstattest = \"no_such_test\"\n");
        let err = mapping(&Spec::parse(&text).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_test"), "{err}");
    }

    #[test]
    fn columns_are_counted_prediction_first() {
        let spec = Spec::parse(MINIMAL).unwrap();
        assert_eq!(
            mapping(&spec).unwrap().counted_columns(),
            vec!["p", "a", "b"]
        );
    }
}
