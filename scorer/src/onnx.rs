//! scikit-learn linear models exported to ONNX by skl2onnx, loaded through tract.
//!
//! skl2onnx exports `LinearRegression` as one `ai.onnx.ml` `LinearRegressor` node and a binary
//! `LogisticRegression` (with `zipmap=False`) as one `LinearClassifier` node whose second output
//! is the class probabilities `[N, 2]`. tract-onnx implements both operators, so the file is
//! parsed once (the protobuf, for the operator's float32 attributes, which give the coefficients
//! exactly) and run through tract on probe rows to check that the graph computes what those
//! attributes say (no scaler in front, no other transform after).
//!
//! Supported graphs: one float32 input `[N, n_features]`, exactly one `LinearRegressor`
//! (`targets` = 1, no post transform) or binary `LinearClassifier` (two class labels, any of the
//! NONE / LOGISTIC / SOFTMAX post transforms tract runs), plus only pass-through nodes
//! (`Identity`, `Cast`, `Reshape`, `Flatten`). Everything else (trees, pipelines with a
//! `Scaler`, multi-class models, graphs built of `MatMul`/`Add`) is refused with the reason.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use tract_onnx::prelude::{
    DatumExt, Framework, InferenceModelExt, IntoRunnable, TDim, Tensor, TypedRunnableModel,
};

use crate::explain::{LinearTerms, Link};
use crate::{Error, Result};

/// ONNX `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i32 = 1;
const ML_DOMAIN: &str = "ai.onnx.ml";
/// Nodes allowed around the linear operator: they do not change the values.
const PASS_THROUGH: [&str; 4] = ["Identity", "Cast", "Reshape", "Flatten"];
/// Load-time check of tract's output against the terms read from the graph: relative to the
/// magnitude of the terms (float32 arithmetic), or absolute on a probability.
const LOAD_CHECK_TOLERANCE: f64 = 1e-4;

/// A linear ONNX model: its terms, read from the graph, and the graph itself, runnable by tract.
pub struct OnnxLinearModel {
    terms: LinearTerms,
    /// The ONNX operator the terms come from (`LinearRegressor` or `LinearClassifier`).
    operator: String,
    plan: Arc<TypedRunnableModel>,
    /// Which graph output, and which column of it, is the value [`LinearTerms::predict`] gives.
    output: usize,
    column: usize,
}

impl std::fmt::Debug for OnnxLinearModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxLinearModel")
            .field("terms", &self.terms)
            .field("operator", &self.operator)
            .field("output", &self.output)
            .field("column", &self.column)
            .finish_non_exhaustive()
    }
}

/// What the linear node says about the model.
struct Parsed {
    coefficients: Vec<f64>,
    intercept: f64,
    link: Link,
    /// The node output that reaches the graph output checked against `predict`.
    node_output: usize,
    column: usize,
}

impl OnnxLinearModel {
    /// Reads `path`, takes the coefficients from its linear operator, loads it through tract and
    /// checks tract's output on probe rows against [`LinearTerms::predict`].
    ///
    /// `features` names the input's columns in order (ONNX files carry no names); it is
    /// required, and its length must equal the model's number of input columns.
    pub fn load(path: &Path, features: Option<&[String]>) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidModel {
            what: format!("file {}", path.display()),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            action: "read model file",
            path: path.to_owned(),
            source,
        })?;
        let onnx = tract_onnx::onnx();
        let proto: ModelProto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| invalid(format!("it is not an ONNX model: {e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| invalid("the ONNX model has no graph".into()))?;

        let input = single_input(graph).map_err(&invalid)?;
        let declared_columns = input_columns(input).map_err(&invalid)?;
        let (node, others) = linear_node(graph).map_err(&invalid)?;
        if let Some(other) = others.first() {
            return Err(invalid(format!(
                "only a single linear operator can be explained, but the graph also has {other} \
                 (ops: {}); export the bare scikit-learn LinearRegression or LogisticRegression",
                op_list(graph)
            )));
        }
        check_input_is_graph_input(graph, node, &input.name).map_err(&invalid)?;
        let parsed = match node.op_type.as_str() {
            "LinearRegressor" => parse_regressor(node),
            _ => parse_classifier(node),
        }
        .map_err(|reason| invalid(format!("{} {reason}", node.op_type)))?;
        let columns = parsed.coefficients.len();
        if let Some(declared) = declared_columns {
            if declared != columns {
                return Err(invalid(format!(
                    "its input {:?} has {declared} columns but {} has {columns} coefficients",
                    input.name, node.op_type
                )));
            }
        }
        let features = match features {
            None => {
                return Err(invalid(format!(
                    "ONNX models carry no feature names: pass the {columns} feature names of its \
                     input columns, in order"
                )))
            }
            Some(f) if f.len() != columns => {
                return Err(invalid(format!(
                    "{} feature names were given ({}) but the model has {columns} input columns",
                    f.len(),
                    f.join(", ")
                )))
            }
            Some(f) => f.to_vec(),
        };
        for (i, name) in features.iter().enumerate() {
            if features[..i].contains(name) {
                return Err(invalid(format!("feature {name:?} is given twice")));
            }
        }
        if let Some((i, value)) = parsed
            .coefficients
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_finite())
        {
            return Err(invalid(format!("coefficient {i} is {value}")));
        }
        if !parsed.intercept.is_finite() {
            return Err(invalid(format!("the intercept is {}", parsed.intercept)));
        }
        let output_name = node.output.get(parsed.node_output).ok_or_else(|| {
            invalid(format!(
                "{} has {} outputs; expected at least {}",
                node.op_type,
                node.output.len(),
                parsed.node_output + 1
            ))
        })?;
        let output = graph_output_index(graph, output_name).ok_or_else(|| {
            invalid(format!(
                "the {} output {output_name:?} is not a graph output (through pass-through nodes)",
                node.op_type
            ))
        })?;

        let terms = LinearTerms {
            features,
            coefficients: parsed.coefficients,
            intercept: parsed.intercept,
            link: parsed.link,
        };
        let plan = runnable(&onnx, &proto, columns)
            .map_err(|e| invalid(format!("tract could not load it: {e:#}")))?;
        let model = Self {
            terms,
            operator: node.op_type.clone(),
            plan,
            output,
            column: parsed.column,
        };
        model.check_against_tract().map_err(invalid)?;
        Ok(model)
    }

    pub fn terms(&self) -> &LinearTerms {
        &self.terms
    }

    pub fn into_terms(self) -> LinearTerms {
        self.terms
    }

    /// `LinearRegressor` or `LinearClassifier`.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// Runs the graph through tract on `rows` (each in feature order, missing values as 0, as
    /// float32) and returns, per row, the output [`LinearTerms::predict`] models: the regression
    /// output, or the positive class's score column (its probability for LOGISTIC / SOFTMAX).
    ///
    /// # Panics
    /// When a row does not have one value per feature.
    pub fn run(&self, rows: &[Vec<Option<f64>>]) -> Result<Vec<f64>> {
        let n = self.terms.features.len();
        let mut data = Vec::with_capacity(rows.len() * n);
        for row in rows {
            assert_eq!(row.len(), n, "run needs one value per feature");
            data.extend(row.iter().map(|v| v.unwrap_or(0.0) as f32));
        }
        let failed = |reason: String| Error::InvalidModel {
            what: format!("{} through tract", self.operator),
            reason,
        };
        let input = Tensor::from_shape(&[rows.len(), n], &data)
            .map_err(|e| failed(format!("input tensor: {e:#}")))?;
        let outputs = self
            .plan
            .run(std::iter::once(input.into()).collect())
            .map_err(|e| failed(format!("run failed: {e:#}")))?;
        let output = outputs
            .get(self.output)
            .ok_or_else(|| failed(format!("no output {}", self.output)))?;
        let view = output
            .to_plain_array_view::<f32>()
            .map_err(|e| failed(format!("output {} is not float32: {e:#}", self.output)))?;
        let values: Vec<f64> = match view.shape() {
            [r] if *r == rows.len() && self.column == 0 => view.iter().map(|&v| v as f64).collect(),
            [r, c] if *r == rows.len() && self.column < *c => (0..rows.len())
                .map(|i| view[[i, self.column]] as f64)
                .collect(),
            shape => {
                return Err(failed(format!(
                    "output {} has shape {shape:?}; expected [{}, >{}]",
                    self.output,
                    rows.len(),
                    self.column
                )))
            }
        };
        Ok(values)
    }

    /// Probe rows through tract against [`LinearTerms::predict`]: all zeros, each unit vector,
    /// all ones, and a row of mixed signs and magnitudes.
    fn check_against_tract(&self) -> Result<(), String> {
        let n = self.terms.features.len();
        let mut rows: Vec<Vec<Option<f64>>> = vec![vec![Some(0.0); n]];
        for i in 0..n {
            let mut row = vec![Some(0.0); n];
            row[i] = Some(1.0);
            rows.push(row);
        }
        rows.push(vec![Some(1.0); n]);
        rows.push(
            (0..n)
                .map(|i| Some((i as f64 + 1.5) * if i % 2 == 0 { 3.0 } else { -7.0 }))
                .collect(),
        );
        let got = self
            .run(&rows)
            .map_err(|e| format!("tract could not run it: {e}"))?;
        for (row, got) in rows.iter().zip(got) {
            let want = self.terms.predict(row);
            let scale = match self.terms.link {
                Link::Identity => {
                    self.terms.intercept.abs()
                        + self
                            .terms
                            .coefficients
                            .iter()
                            .zip(row)
                            .map(|(c, x)| (c * x.unwrap_or(0.0)).abs())
                            .sum::<f64>()
                }
                Link::Logistic => 0.0,
            }
            .max(1.0);
            // Written so that a NaN on either side fails.
            let within = (got - want).abs() <= LOAD_CHECK_TOLERANCE * scale;
            if !within {
                let row: Vec<f64> = row.iter().map(|v| v.unwrap_or(0.0)).collect();
                return Err(format!(
                    "tract's output {got} on probe row {row:?} differs from {want}, computed from \
                     the {} attributes: the graph is not the linear model they describe",
                    self.operator
                ));
            }
        }
        Ok(())
    }
}

fn runnable(
    onnx: &tract_onnx::Onnx,
    proto: &ModelProto,
    columns: usize,
) -> tract_onnx::prelude::TractResult<Arc<TypedRunnableModel>> {
    let model = onnx.model_for_proto_model(proto)?;
    let rows = TDim::from(model.sym("N"));
    model
        .with_input_fact(0, f32::fact([rows, TDim::from(columns as i64)]).into())?
        .into_optimized()?
        .into_runnable()
}

/// The graph's one input that is not an initializer.
fn single_input(graph: &GraphProto) -> Result<&ValueInfoProto, String> {
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .collect();
    match inputs.as_slice() {
        [input] => Ok(input),
        _ => Err(format!(
            "it has {} inputs ({}); a scikit-learn linear model has one float tensor [N, n_features]",
            inputs.len(),
            inputs
                .iter()
                .map(|i| format!("{:?}", i.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The number of columns of a float32 `[N, n]` input, when the file declares it.
fn input_columns(input: &ValueInfoProto) -> Result<Option<usize>, String> {
    let Some(TypeValue::TensorType(tensor)) = input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(format!("its input {:?} is not a tensor", input.name));
    };
    if tensor.elem_type != ONNX_FLOAT {
        return Err(format!(
            "its input {:?} has ONNX element type {}; expected float32 (1): export with \
             skl2onnx FloatTensorType",
            input.name, tensor.elem_type
        ));
    }
    let Some(shape) = tensor.shape.as_ref() else {
        return Ok(None);
    };
    match shape.dim.as_slice() {
        [_, columns] => Ok(match columns.value {
            Some(DimValue::DimValue(n)) if n > 0 => Some(n as usize),
            _ => None,
        }),
        dims => Err(format!(
            "its input {:?} has rank {}; expected [N, n_features]",
            input.name,
            dims.len()
        )),
    }
}

fn op_list(graph: &GraphProto) -> String {
    graph
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_linear(node: &NodeProto) -> bool {
    matches!(
        node.op_type.as_str(),
        "LinearRegressor" | "LinearClassifier"
    ) && (node.domain == ML_DOMAIN)
}

/// The linear node, and the other nodes that are neither it nor pass-through.
fn linear_node(graph: &GraphProto) -> Result<(&NodeProto, Vec<&str>), String> {
    let linear: Vec<&NodeProto> = graph.node.iter().filter(|n| is_linear(n)).collect();
    match linear.as_slice() {
        [node] => {
            let others = graph
                .node
                .iter()
                .filter(|n| !is_linear(n) && !PASS_THROUGH.contains(&n.op_type.as_str()))
                .map(|n| n.op_type.as_str())
                .collect();
            Ok((node, others))
        }
        [] => Err(format!(
            "it is not a linear model: no ai.onnx.ml LinearRegressor or LinearClassifier node \
             (ops: {}); supported are scikit-learn LinearRegression and binary LogisticRegression \
             exported by skl2onnx",
            op_list(graph)
        )),
        _ => Err(format!(
            "it has {} linear operators (ops: {}); only one can be explained",
            linear.len(),
            op_list(graph)
        )),
    }
}

fn producer<'g>(graph: &'g GraphProto, name: &str) -> Option<&'g NodeProto> {
    graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == name))
}

/// The linear node must read the graph input itself (through pass-through nodes only).
fn check_input_is_graph_input(
    graph: &GraphProto,
    node: &NodeProto,
    input: &str,
) -> Result<(), String> {
    let mut name = node.input.first().map(String::as_str).unwrap_or_default();
    for _ in 0..=graph.node.len() {
        if name == input {
            return Ok(());
        }
        match producer(graph, name) {
            Some(p) if PASS_THROUGH.contains(&p.op_type.as_str()) && !p.input.is_empty() => {
                name = &p.input[0];
            }
            Some(p) => {
                return Err(format!(
                    "the features go through {} before {}: export the bare linear model",
                    p.op_type, node.op_type
                ))
            }
            None => break,
        }
    }
    Err(format!(
        "{} does not read the graph input {input:?}",
        node.op_type
    ))
}

/// Which graph output `name` reaches through pass-through nodes.
fn graph_output_index(graph: &GraphProto, name: &str) -> Option<usize> {
    let mut name = name.to_owned();
    for _ in 0..=graph.node.len() {
        if let Some(i) = graph.output.iter().position(|o| o.name == name) {
            return Some(i);
        }
        let next = graph.node.iter().find(|n| {
            PASS_THROUGH.contains(&n.op_type.as_str()) && n.input.first() == Some(&name)
        })?;
        name = next.output.first()?.clone();
    }
    None
}

fn attribute<'n>(node: &'n NodeProto, name: &str) -> Option<&'n tract_onnx::pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn floats(node: &NodeProto, name: &str) -> Vec<f64> {
    attribute(node, name).map_or_else(Vec::new, |a| a.floats.iter().map(|&v| v as f64).collect())
}

fn string(node: &NodeProto, name: &str) -> Option<String> {
    attribute(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn int(node: &NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).map(|a| a.i)
}

fn parse_regressor(node: &NodeProto) -> Result<Parsed, String> {
    let targets = int(node, "targets").unwrap_or(1);
    if targets != 1 {
        return Err(format!("has {targets} targets; only one can be explained"));
    }
    let post = string(node, "post_transform").unwrap_or_else(|| "NONE".into());
    if post != "NONE" {
        return Err(format!("has post_transform {post}; only NONE is supported"));
    }
    let coefficients = floats(node, "coefficients");
    if coefficients.is_empty() {
        return Err("has no coefficients".into());
    }
    let intercept = match floats(node, "intercepts").as_slice() {
        [] => 0.0,
        [b] => *b,
        more => return Err(format!("has {} intercepts for one target", more.len())),
    };
    Ok(Parsed {
        coefficients,
        intercept,
        link: Link::Identity,
        node_output: 0,
        column: 0,
    })
}

/// A binary `LinearClassifier`: the terms of its positive (second) class's score column.
///
/// With two weight rows `z0`, `z1` (skl2onnx writes `−w, w`): LOGISTIC gives column 1 =
/// σ(z1) and SOFTMAX σ(z1 − z0); NONE gives z1 itself. With one row `z` (ONNX's binary
/// layout, scores `[−z, z]`): σ(z), σ(2z) and z.
fn parse_classifier(node: &NodeProto) -> Result<Parsed, String> {
    let labels = attribute(node, "classlabels_ints")
        .map(|a| a.ints.len())
        .filter(|&n| n > 0)
        .or_else(|| attribute(node, "classlabels_strings").map(|a| a.strings.len()))
        .unwrap_or(0);
    if labels != 2 {
        return Err(format!(
            "has {labels} class labels; only binary classifiers (2 classes) are supported"
        ));
    }
    if int(node, "multi_class").unwrap_or(0) != 0 {
        return Err("has multi_class set; only a binary classifier is supported".into());
    }
    let post = string(node, "post_transform").unwrap_or_else(|| "NONE".into());
    let coefficients = floats(node, "coefficients");
    let intercepts = floats(node, "intercepts");
    // Without intercepts a binary classifier has one weight row (as ONNX and tract read it).
    let rows = intercepts.len().max(1);
    if rows > 2 || coefficients.is_empty() || !coefficients.len().is_multiple_of(rows) {
        return Err(format!(
            "has {} coefficients and {} intercepts; expected one or two weight rows",
            coefficients.len(),
            intercepts.len()
        ));
    }
    let n = coefficients.len() / rows;
    let intercept_of = |row: usize| intercepts.get(row).copied().unwrap_or(0.0);
    let (coefficients, intercept, link) = match (rows, post.as_str()) {
        (2, "LOGISTIC") => (coefficients[n..].to_vec(), intercept_of(1), Link::Logistic),
        (2, "SOFTMAX") => (
            (0..n)
                .map(|i| coefficients[n + i] - coefficients[i])
                .collect(),
            intercept_of(1) - intercept_of(0),
            Link::Logistic,
        ),
        (2, "NONE") => (coefficients[n..].to_vec(), intercept_of(1), Link::Identity),
        (1, "LOGISTIC") => (coefficients, intercept_of(0), Link::Logistic),
        (1, "SOFTMAX") => (
            coefficients.iter().map(|c| 2.0 * c).collect(),
            2.0 * intercept_of(0),
            Link::Logistic,
        ),
        (1, "NONE") => (coefficients, intercept_of(0), Link::Identity),
        (_, other) => {
            return Err(format!(
                "has post_transform {other}; supported are NONE, LOGISTIC and SOFTMAX"
            ))
        }
    };
    Ok(Parsed {
        coefficients,
        intercept,
        link,
        node_output: 1,
        column: 1,
    })
}
