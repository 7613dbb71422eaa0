//! Linear terms from ONNX models exported by skl2onnx (models/onnx/, made by
//! scripts/models/make_onnx_models.py) and from the scorer's JSON model.

use std::path::{Path, PathBuf};

use serde_json::Value;
use streamwatch_scorer::{load_linear_terms, LinearModel, LinearTerms, Link, OnnxLinearModel};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(repo("models/onnx/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn features() -> Vec<String> {
    expected()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

fn model_case(file: &str) -> Value {
    expected()["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file"] == format!("models/onnx/{file}"))
        .unwrap_or_else(|| panic!("{file} in expected.json"))
        .clone()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn rows(case: &Value) -> Vec<Vec<Option<f64>>> {
    case["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["x"]
                .as_array()
                .unwrap()
                .iter()
                .map(Value::as_f64)
                .collect()
        })
        .collect()
}

fn column(case: &Value, key: &str) -> Vec<f64> {
    case["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[key].as_f64().unwrap())
        .collect()
}

#[track_caller]
fn assert_relative(got: f64, want: f64, tolerance: f64, what: &str) {
    let error = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        error <= tolerance,
        "{what}: got {got}, want {want} (relative error {error:e} > {tolerance:e})"
    );
}

/// Float32 arithmetic on outputs of this size: relative 1e-6 of max(1, |want|).
#[track_caller]
fn assert_close(got: f64, want: f64, what: &str) {
    let error = (got - want).abs();
    assert!(
        error <= 1e-6 * want.abs().max(1.0),
        "{what}: got {got}, want {want} (difference {error:e})"
    );
}

fn load(file: &str) -> OnnxLinearModel {
    OnnxLinearModel::load(&repo(&format!("models/onnx/{file}")), Some(&features())).unwrap()
}

fn check_terms(terms: &LinearTerms, case: &Value, link: Link) {
    assert_eq!(terms.features, features());
    assert_eq!(terms.link, link);
    let sklearn = floats(&case["coefficients"]);
    let stored = floats(&case["coefficients_float32"]);
    assert_eq!(terms.coefficients.len(), sklearn.len());
    for (i, ((got, want), want32)) in terms
        .coefficients
        .iter()
        .zip(&sklearn)
        .zip(&stored)
        .enumerate()
    {
        assert_relative(*got, *want, 1e-6, &format!("coefficient {i}"));
        // The ONNX file stores float32: the terms are exactly those values.
        assert_eq!(got.to_bits(), want32.to_bits(), "coefficient {i} as stored");
    }
    assert_relative(
        terms.intercept,
        case["intercept"].as_f64().unwrap(),
        1e-6,
        "intercept",
    );
    assert_eq!(terms.intercept, case["intercept_float32"].as_f64().unwrap());
}

#[test]
fn linear_regression_terms_are_scikit_learns() {
    let case = model_case("trip-duration-linreg.onnx");
    let path = repo("models/onnx/trip-duration-linreg.onnx");
    let terms = load_linear_terms(&path, Some(&features())).unwrap();
    check_terms(&terms, &case, Link::Identity);
    // Same data, filter and rows as `scorer train`: the JSON model's fit, to float32 precision.
    let json = LinearModel::load(repo("models/trip-duration-linear.json")).unwrap();
    for (got, want) in terms.coefficients.iter().zip(json.coefficients()) {
        assert_relative(*got, *want, 1e-6, "coefficient against the JSON model");
    }
}

#[test]
fn logistic_regression_terms_are_the_logit_coefficients() {
    let case = model_case("trip-over-15min-logreg.onnx");
    let path = repo("models/onnx/trip-over-15min-logreg.onnx");
    let terms = load_linear_terms(&path, Some(&features())).unwrap();
    check_terms(&terms, &case, Link::Logistic);
}

#[test]
fn tract_runs_the_linear_regression_as_predict_and_scikit_learn_do() {
    let case = model_case("trip-duration-linreg.onnx");
    let model = load("trip-duration-linreg.onnx");
    assert_eq!(model.operator(), "LinearRegressor");
    let x = rows(&case);
    assert_eq!(x.len(), 20);
    assert!(x.iter().any(|row| row.contains(&None)), "rows with nulls");
    let tract = model.run(&x).unwrap();
    let sklearn = column(&case, "sklearn_predict");
    let onnxruntime = column(&case, "onnxruntime");
    for (i, row) in x.iter().enumerate() {
        let predicted = model.terms().predict(row);
        assert_close(tract[i], predicted, &format!("row {i}: tract vs predict"));
        assert_close(
            predicted,
            sklearn[i],
            &format!("row {i}: predict vs scikit-learn"),
        );
        assert_close(
            tract[i],
            sklearn[i],
            &format!("row {i}: tract vs scikit-learn"),
        );
        assert_close(
            tract[i],
            onnxruntime[i],
            &format!("row {i}: tract vs onnxruntime"),
        );
    }
}

#[test]
fn tract_runs_the_logistic_regression_as_predict_and_scikit_learn_do() {
    let case = model_case("trip-over-15min-logreg.onnx");
    let model = load("trip-over-15min-logreg.onnx");
    assert_eq!(model.operator(), "LinearClassifier");
    let x = rows(&case);
    let tract = model.run(&x).unwrap();
    let proba = column(&case, "sklearn_predict_proba");
    let decision = column(&case, "sklearn_decision_function");
    let onnxruntime = column(&case, "onnxruntime");
    for (i, row) in x.iter().enumerate() {
        let predicted = model.terms().predict(row);
        assert!((0.0..=1.0).contains(&predicted));
        assert_close(tract[i], predicted, &format!("row {i}: tract vs predict"));
        assert_close(
            predicted,
            proba[i],
            &format!("row {i}: predict vs predict_proba"),
        );
        assert_close(
            tract[i],
            onnxruntime[i],
            &format!("row {i}: tract vs onnxruntime"),
        );
        assert_close(
            model.terms().linear_predictor(row),
            decision[i],
            &format!("row {i}: logit vs decision_function"),
        );
    }
}

#[test]
fn json_model_gives_the_linear_models_terms_exactly() {
    let path = repo("models/trip-duration-linear.json");
    let model = LinearModel::load(&path).unwrap();
    for features in [None, Some(model.features())] {
        let terms = load_linear_terms(&path, features).unwrap();
        assert_eq!(terms.features, model.features());
        assert_eq!(terms.link, Link::Identity);
        assert_eq!(terms.intercept.to_bits(), model.intercept().to_bits());
        assert_eq!(terms.coefficients.len(), model.coefficients().len());
        for (a, b) in terms.coefficients.iter().zip(model.coefficients()) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        let x = [
            Some(1.0),
            Some(2.5),
            None,
            Some(13.3),
            Some(74.0),
            Some(42.0),
        ];
        assert_eq!(terms.predict(&x).to_bits(), model.predict(&x).to_bits());
    }

    let mut reordered = model.features().to_vec();
    reordered.swap(0, 1);
    let error = load_linear_terms(&path, Some(&reordered))
        .unwrap_err()
        .to_string();
    assert!(error.contains("differ from the features given"), "{error}");
}

#[test]
fn errors_name_the_problem() {
    let features = features();
    let error = |path: &Path, features: Option<&[String]>| {
        load_linear_terms(path, features).unwrap_err().to_string()
    };

    let missing = repo("models/onnx/no-such-model.onnx");
    let e = error(&missing, Some(&features));
    assert!(
        e.contains("could not read model file") && e.contains("no-such-model.onnx"),
        "{e}"
    );

    let linreg = repo("models/onnx/trip-duration-linreg.onnx");
    let e = error(&linreg, None);
    assert!(e.contains("trip-duration-linreg.onnx"), "{e}");
    assert!(
        e.contains("carry no feature names") && e.contains("6 feature names"),
        "{e}"
    );

    let e = error(&linreg, Some(&features[..5]));
    assert!(
        e.contains("5 feature names were given") && e.contains("6 input columns"),
        "{e}"
    );

    let mut twice = features.clone();
    twice[5] = twice[0].clone();
    let e = error(&linreg, Some(&twice));
    assert!(e.contains("\"passenger_count\" is given twice"), "{e}");

    let tree = repo("models/onnx/trip-duration-tree.onnx");
    let e = error(&tree, Some(&features));
    assert!(
        e.contains("not a linear model") && e.contains("TreeEnsembleRegressor"),
        "{e}"
    );

    let scaled = repo("models/onnx/trip-duration-scaled-linreg.onnx");
    let e = error(&scaled, Some(&features));
    assert!(e.contains("Scaler"), "{e}");

    let dir = std::env::temp_dir().join(format!("scorer-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff not a protobuf").unwrap();
    let e = error(&garbage, Some(&features));
    assert!(e.contains("not an ONNX model"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Hand-edited variants of the LogisticRegression export (onnx.helper, in the script): other
/// LinearClassifier layouts and post transforms, checked against onnxruntime.
#[test]
fn other_binary_classifier_layouts_match_onnxruntime() {
    let logreg = load("trip-over-15min-logreg.onnx").into_terms();
    for (file, scale) in [
        // SOFTMAX over the scores [-z, z]: sigmoid(2z).
        ("trip-over-15min-logreg-softmax.onnx", 2.0),
        // One weight row (w, b) and LOGISTIC: sigmoid(z).
        ("trip-over-15min-logreg-1row.onnx", 1.0),
    ] {
        let case = model_case(file);
        let model = load(file);
        let terms = model.terms();
        assert_eq!(terms.link, Link::Logistic, "{file}");
        for (got, want) in terms.coefficients.iter().zip(&logreg.coefficients) {
            assert_eq!(*got, scale * want, "{file}");
        }
        assert_eq!(terms.intercept, scale * logreg.intercept, "{file}");
        let x = rows(&case);
        let tract = model.run(&x).unwrap();
        let onnxruntime = column(&case, "onnxruntime");
        for (i, row) in x.iter().enumerate() {
            let what = format!("{file} row {i}");
            assert_close(
                tract[i],
                terms.predict(row),
                &format!("{what}: tract vs predict"),
            );
            assert_close(
                tract[i],
                onnxruntime[i],
                &format!("{what}: tract vs onnxruntime"),
            );
        }
    }
}

/// Casts to int64 and back after the LinearRegressor look like pass-through nodes but truncate
/// the output: only running the graph through tract at load catches it.
#[test]
fn a_graph_that_changes_the_linear_output_is_refused_after_running_it() {
    let path = repo("models/onnx/trip-duration-linreg-truncated.onnx");
    let e = load_linear_terms(&path, Some(&features()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tract's output") && e.contains("not the linear model they describe"),
        "{e}"
    );
}
