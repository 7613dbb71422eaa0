//! The HTTP source of live mode: `POST /events` takes one JSON object, a JSON array of objects
//! or NDJSON lines (`application/x-ndjson`), hands them to the ingest loop exactly like stdin
//! lines and answers once the broker acknowledged every accepted event:
//!
//! - `202 {"accepted": N, "rejected": [{"index": i, "reason": "..."}]}`: every valid event is
//!   on the topic, every invalid one on the dead-letter topic with that reason;
//! - `400 {"error": "..."}`: the body is not JSON (it is dead-lettered whole);
//! - `413 {"error": "..."}`: the body is larger than `--http-max-body-bytes`;
//! - `503 {"error": "...", ...}`: the broker did not acknowledge everything, or the producer is
//!   shutting down; the request may be retried.
//!
//! `GET /healthz` answers `ok`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::source::live::{Inputs, LiveInput, Receipt, Source, Submission};

/// Where and how the HTTP source serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    pub max_body_bytes: usize,
    /// How long a request waits for the broker's acknowledgements.
    pub ack_timeout: Duration,
}

/// How a request body carries its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of them (the default for any other content type).
    Json,
    /// One JSON object per line (`application/x-ndjson`, `application/jsonl`, ...).
    Ndjson,
}

impl BodyFormat {
    pub fn of(content_type: Option<&str>) -> Self {
        let essence = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some(
                "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/json-lines"
                | "application/jsonlines",
            ) => BodyFormat::Ndjson,
            _ => BodyFormat::Json,
        }
    }
}

/// One event of a body: where it is (`event 2`, `line 3`) and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    pub label: String,
    pub bytes: &'a [u8],
}

/// A request body split into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Events<'a> {
    /// The events in body order (an array's elements, a lone object, non-blank lines); each
    /// is validated like a stdin line.
    Items(Vec<Item<'a>>),
    /// A JSON body that does not parse at all.
    NotJson,
}

/// Splits `body` into events without re-encoding them, so dead letters keep the sender's bytes.
pub fn split_body(format: BodyFormat, body: &[u8]) -> Events<'_> {
    match format {
        BodyFormat::Ndjson => Events::Items(
            body.split(|b| *b == b'\n')
                .enumerate()
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                .map(|(number, line)| Item {
                    label: format!("line {}", number + 1),
                    bytes: line.strip_suffix(b"\r").unwrap_or(line),
                })
                .collect(),
        ),
        BodyFormat::Json => {
            if serde_json::from_slice::<IgnoredAny>(body).is_err() {
                return Events::NotJson;
            }
            let elements = match body.trim_ascii_start().first() {
                Some(b'[') => match array_elements(body) {
                    Some(elements) => elements,
                    None => return Events::NotJson,
                },
                _ => vec![body.trim_ascii()],
            };
            Events::Items(
                elements
                    .into_iter()
                    .enumerate()
                    .map(|(index, bytes)| Item {
                        label: format!("event {index}"),
                        bytes,
                    })
                    .collect(),
            )
        }
    }
}

fn skip_whitespace(body: &[u8], mut at: usize) -> usize {
    while body.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The exact bytes of each element of the JSON array `body`; `None` when it is not one.
fn array_elements(body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut at = skip_whitespace(body, 0);
    if body.get(at) != Some(&b'[') {
        return None;
    }
    at = skip_whitespace(body, at + 1);
    let mut elements = Vec::new();
    if body.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            // One value, and the offset where it ends (a comma or bracket may follow it).
            let mut values =
                serde_json::Deserializer::from_slice(&body[at..]).into_iter::<IgnoredAny>();
            values.next()?.ok()?;
            let end = at + values.byte_offset();
            elements.push(&body[at..end]);
            at = skip_whitespace(body, end);
            match body.get(at) {
                Some(b',') => at = skip_whitespace(body, at + 1),
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_whitespace(body, at) == body.len()).then_some(elements)
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads a body of at most `limit` bytes, stopping as soon as it is larger.
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if bytes.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

struct HttpState {
    inputs: Inputs,
    max_body_bytes: usize,
    ack_timeout: Duration,
    requests: AtomicU64,
}

/// Binds `options.addr` and serves until `stop` fires, then finishes the requests in flight
/// and returns. Returns the bound address (logged too) and the server task.
pub async fn serve(
    options: &HttpOptions,
    inputs: Inputs,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let bind_error = |source| Error::HttpBind {
        addr: options.addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let state = Arc::new(HttpState {
        inputs,
        max_body_bytes: options.max_body_bytes,
        ack_timeout: options.ack_timeout,
        requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/events", post(post_events))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state);
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        match served {
            Ok(()) => tracing::info!("HTTP source stopped"),
            Err(error) => tracing::error!(%error, "HTTP source failed"),
        }
    });
    // The address is in the message, uncoloured, for scripts that start on port 0.
    tracing::info!("HTTP source listening on http://{addr}/events");
    Ok((addr, server))
}

async fn post_events(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = accept_events(&state, &headers, body).await;
    metrics::histogram!(
        "streamwatch_producer_http_request_duration_seconds",
        "status" => response.status().as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn error_response(status: StatusCode, error: impl Into<String>) -> Response {
    json_response(status, json!({ "error": error.into() }))
}

fn rejected_json(receipt: &Receipt) -> Value {
    receipt
        .rejected
        .iter()
        .map(|r| json!({ "index": r.index, "reason": r.reason }))
        .collect()
}

async fn accept_events(state: &HttpState, headers: &HeaderMap, body: Body) -> Response {
    let request = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let limit = state.max_body_bytes;
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes (--http-max-body-bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let bytes = match read_limited(body, limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Read(error)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {error}"),
            )
        }
    };
    let format = BodyFormat::of(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    );
    let arrival = chrono::Local::now().naive_local();
    let input = |origin: String, bytes: &[u8]| LiveInput {
        origin,
        arrival,
        bytes: bytes.to_vec(),
    };
    // A body that is not JSON goes through validation whole, which dead-letters it as
    // invalid JSON with the parser's reason.
    let (inputs, not_json) = match split_body(format, &bytes) {
        Events::Items(items) => (
            items
                .into_iter()
                .map(|item| input(format!("http request {request} {}", item.label), item.bytes))
                .collect(),
            false,
        ),
        Events::NotJson => (vec![input(format!("http request {request}"), &bytes)], true),
    };
    let (reply, receipt) = oneshot::channel();
    let submission = Submission {
        source: Source::Http,
        inputs,
        reply: Some(reply),
    };
    if state.inputs.send(Ok(submission)).await.is_err() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the producer is shutting down",
        );
    }
    let receipt = match tokio::time::timeout(state.ack_timeout, receipt).await {
        Ok(Ok(receipt)) => receipt,
        Ok(Err(_)) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the producer stopped before the events were acknowledged",
            )
        }
        Err(_) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the broker did not acknowledge the events within {:?}; they may still be \
                     delivered, so a retry may duplicate them",
                    state.ack_timeout
                ),
            )
        }
    };
    if receipt.failed > 0 {
        let error = receipt.error.clone().unwrap_or_default();
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": format!(
                    "{} event(s) or dead letter(s) were not acknowledged by the broker: {error}",
                    receipt.failed
                ),
                "accepted": receipt.accepted,
                "failed": receipt.failed,
                "rejected": rejected_json(&receipt),
            }),
        );
    }
    if not_json {
        let reason = receipt.rejected.first().map(|r| r.reason.as_str());
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not JSON ({}); send a JSON object, a JSON array of objects or \
                 application/x-ndjson lines",
                reason.unwrap_or("unreadable")
            ),
        );
    }
    json_response(
        StatusCode::ACCEPTED,
        json!({
            "accepted": receipt.accepted,
            "rejected": rejected_json(&receipt),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    fn items(events: Events<'_>) -> Vec<(String, String)> {
        let Events::Items(items) = events else {
            panic!("expected events, got {events:?}");
        };
        items
            .into_iter()
            .map(|item| (item.label, String::from_utf8(item.bytes.to_vec()).unwrap()))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn content_types_choose_the_format() {
        assert_eq!(BodyFormat::of(None), BodyFormat::Json);
        assert_eq!(BodyFormat::of(Some("application/json")), BodyFormat::Json);
        assert_eq!(BodyFormat::of(Some("text/plain")), BodyFormat::Json);
        assert_eq!(
            BodyFormat::of(Some("application/x-ndjson")),
            BodyFormat::Ndjson
        );
        assert_eq!(
            BodyFormat::of(Some("Application/X-NDJSON; charset=utf-8")),
            BodyFormat::Ndjson
        );
        assert_eq!(
            BodyFormat::of(Some("application/jsonl")),
            BodyFormat::Ndjson
        );
    }

    #[test]
    fn an_object_is_one_event() {
        let body = b" {\"trip_id\":\"t-1\", \"fare_amount\": 7.50}\n";
        assert_eq!(
            items(split_body(BodyFormat::Json, body)),
            pairs(&[("event 0", "{\"trip_id\":\"t-1\", \"fare_amount\": 7.50}")])
        );
        // Any other JSON value too; validation rejects it as not an object.
        assert_eq!(
            items(split_body(BodyFormat::Json, b"42")),
            pairs(&[("event 0", "42")])
        );
    }

    #[test]
    fn an_array_is_split_into_its_exact_elements() {
        let body = br#"[ {"a": [1, 2], "s": "],{"} ,{"b":1.50},
            [3],"x" , 17,null,true,{} ]"#;
        assert_eq!(
            items(split_body(BodyFormat::Json, body)),
            pairs(&[
                ("event 0", r#"{"a": [1, 2], "s": "],{"}"#),
                ("event 1", r#"{"b":1.50}"#),
                ("event 2", "[3]"),
                ("event 3", r#""x""#),
                ("event 4", "17"),
                ("event 5", "null"),
                ("event 6", "true"),
                ("event 7", "{}"),
            ])
        );
        assert_eq!(items(split_body(BodyFormat::Json, b" [ ] ")), pairs(&[]));
        assert_eq!(
            items(split_body(BodyFormat::Json, b"[[]]")),
            pairs(&[("event 0", "[]")])
        );
    }

    #[test]
    fn ndjson_lines_are_events_and_blank_lines_are_skipped() {
        let body = b"{\"a\":1}\r\n\n  \n[2]\n{\"c\":\nnot json\n";
        assert_eq!(
            items(split_body(BodyFormat::Ndjson, body)),
            pairs(&[
                ("line 1", "{\"a\":1}"),
                ("line 4", "[2]"),
                ("line 5", "{\"c\":"),
                ("line 6", "not json"),
            ])
        );
        assert_eq!(items(split_body(BodyFormat::Ndjson, b"")), pairs(&[]));
    }

    #[test]
    fn bodies_that_are_not_json() {
        for body in [
            &b""[..],
            b"   ",
            b"hello",
            b"{\"a\":",
            b"[{\"a\":1},",
            b"[{\"a\":1},]",
            b"[1 2]",
            b"{\"a\":1}{\"b\":2}",
            b"[1] x",
            b"{\"a\":1}\n{\"b\":2}",
        ] {
            assert_eq!(
                split_body(BodyFormat::Json, body),
                Events::NotJson,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        assert_eq!(
            read_limited(Body::from("0123456789"), 10).await.unwrap(),
            b"0123456789"
        );
        assert!(matches!(
            read_limited(Body::from("0123456789!"), 10).await,
            Err(BodyError::TooLarge)
        ));
        let chunks = futures::stream::iter(
            ["01234", "56789", "!"].map(|c| Ok::<_, std::io::Error>(c.to_owned())),
        );
        assert!(matches!(
            read_limited(Body::from_stream(chunks), 10).await,
            Err(BodyError::TooLarge)
        ));
    }

    // --- The server, in front of a stand-in for the ingest loop ---

    /// Answers every submission: objects are accepted, anything else rejected with its origin.
    fn fake_loop(
        mut submissions: mpsc::Receiver<Result<Submission>>,
        fail: bool,
        seen: mpsc::UnboundedSender<Vec<(String, String)>>,
    ) {
        tokio::spawn(async move {
            while let Some(Ok(submission)) = submissions.recv().await {
                let mut receipt = Receipt::default();
                let mut inputs = Vec::new();
                for (index, input) in submission.inputs.iter().enumerate() {
                    let text = String::from_utf8_lossy(&input.bytes).into_owned();
                    let object = serde_json::from_slice::<Value>(&input.bytes)
                        .is_ok_and(|value| value.is_object());
                    if object {
                        receipt.accepted += 1;
                    } else {
                        receipt.rejected.push(crate::source::live::Rejected {
                            index,
                            kind: "not_an_object",
                            reason: format!("{}: not an object", input.origin),
                        });
                    }
                    inputs.push((input.origin.clone(), text));
                }
                if fail {
                    receipt.failed = receipt.accepted;
                    receipt.error = Some("Local: Message timed out".into());
                }
                seen.send(inputs).unwrap();
                if let Some(reply) = submission.reply {
                    reply.send(receipt).unwrap();
                }
            }
        });
    }

    struct Server {
        addr: SocketAddr,
        stop: CancellationToken,
        task: JoinHandle<()>,
        seen: mpsc::UnboundedReceiver<Vec<(String, String)>>,
    }

    async fn server(max_body_bytes: usize, fail: bool) -> Server {
        let (tx, rx) = mpsc::channel(8);
        let (seen_tx, seen) = mpsc::unbounded_channel();
        fake_loop(rx, fail, seen_tx);
        let stop = CancellationToken::new();
        let options = HttpOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes,
            ack_timeout: Duration::from_secs(5),
        };
        let (addr, task) = serve(&options, tx, stop.clone()).await.unwrap();
        Server {
            addr,
            stop,
            task,
            seen,
        }
    }

    /// A bare HTTP/1.1 exchange: `head` lists extra header lines.
    async fn exchange(addr: SocketAddr, request_line: &str, head: &str, body: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{request_line} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{head}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    }

    async fn post(addr: SocketAddr, content_type: &str, body: &str) -> (u16, Value) {
        let head = format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        parse(&exchange(addr, "POST /events", &head, body.as_bytes()).await)
    }

    fn parse(response: &str) -> (u16, Value) {
        let status = response[9..12].parse().unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        (status, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn events_are_submitted_and_answered_with_the_receipt() {
        let mut server = server(1 << 20, false).await;
        let (status, body) = post(
            server.addr,
            "application/json",
            r#"[{"a":1}, [2], {"b":2}]"#,
        )
        .await;
        assert_eq!(status, 202);
        assert_eq!(
            body,
            json!({"accepted": 2, "rejected": [
                {"index": 1, "reason": "http request 1 event 1: not an object"}
            ]})
        );
        assert_eq!(
            server.seen.recv().await.unwrap(),
            pairs(&[
                ("http request 1 event 0", r#"{"a":1}"#),
                ("http request 1 event 1", "[2]"),
                ("http request 1 event 2", r#"{"b":2}"#),
            ])
        );

        let (status, body) = post(server.addr, "application/json", r#"{"a":1}"#).await;
        assert_eq!(
            (status, body),
            (202, json!({"accepted": 1, "rejected": []}))
        );
        server.seen.recv().await.unwrap();

        let (status, body) = post(server.addr, "application/x-ndjson", "{\"a\":1}\n\nnope\n").await;
        assert_eq!(status, 202);
        assert_eq!(
            body,
            json!({"accepted": 1, "rejected": [
                {"index": 1, "reason": "http request 3 line 3: not an object"}
            ]})
        );
        assert_eq!(
            server.seen.recv().await.unwrap(),
            pairs(&[
                ("http request 3 line 1", r#"{"a":1}"#),
                ("http request 3 line 3", "nope"),
            ])
        );

        let health = exchange(server.addr, "GET /healthz", "", b"").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("ok\n"), "{health}");
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_refused_and_submitted_whole() {
        let mut server = server(1 << 20, false).await;
        let (status, body) = post(server.addr, "application/json", "{\"a\":1").await;
        assert_eq!(status, 400);
        let error = body["error"].as_str().unwrap();
        assert!(
            error.starts_with("the body is not JSON (http request 1: not an object)"),
            "{error}"
        );
        assert_eq!(
            server.seen.recv().await.unwrap(),
            pairs(&[("http request 1", "{\"a\":1")])
        );
    }

    #[tokio::test]
    async fn oversized_bodies_get_413() {
        let mut server = server(16, false).await;
        let (status, body) = post(server.addr, "application/json", &"1".repeat(17)).await;
        assert_eq!(status, 413);
        assert_eq!(
            body["error"],
            "the request body is larger than 16 bytes (--http-max-body-bytes)"
        );

        // Without a length up front the body is cut off while it is read.
        let chunked = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n";
        let mut body = String::new();
        for chunk in [r#"[{"a":1},"#, r#" {"b":2}]"#] {
            body.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        body.push_str("0\r\n\r\n");
        let response = exchange(server.addr, "POST /events", chunked, body.as_bytes()).await;
        assert_eq!(parse(&response).0, 413);

        // At the limit it passes.
        let (status, _) = post(server.addr, "application/json", r#"[{"a":1}, {}   ]"#).await;
        assert_eq!(status, 202);
        assert_eq!(server.seen.recv().await.unwrap().len(), 2);
        assert!(
            server.seen.try_recv().is_err(),
            "nothing oversized was submitted"
        );
    }

    #[tokio::test]
    async fn delivery_failures_get_503() {
        let server = server(1 << 20, true).await;
        let (status, body) = post(server.addr, "application/json", r#"[{"a":1},2]"#).await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({
                "error": "1 event(s) or dead letter(s) were not acknowledged by the broker: \
                          Local: Message timed out",
                "accepted": 1,
                "failed": 1,
                "rejected": [{"index": 1, "reason": "http request 1 event 1: not an object"}],
            })
        );
    }

    #[tokio::test]
    async fn unanswered_requests_get_503() {
        // A loop that drops every submission without answering.
        let (tx, mut rx) = mpsc::channel::<Result<Submission>>(8);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let options = HttpOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 1024,
            ack_timeout: Duration::from_secs(5),
        };
        let (addr, _task) = serve(&options, tx, CancellationToken::new()).await.unwrap();
        let (status, body) = post(addr, "application/json", "{}").await;
        assert_eq!(status, 503);
        assert_eq!(
            body["error"],
            "the producer stopped before the events were acknowledged"
        );

        // A loop that never answers: the request gives up after the timeout.
        let (tx, mut rx) = mpsc::channel::<Result<Submission>>(8);
        tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(submission) = rx.recv().await {
                kept.push(submission);
            }
        });
        let options = HttpOptions {
            ack_timeout: Duration::from_millis(50),
            ..options
        };
        let (addr, _task) = serve(&options, tx, CancellationToken::new()).await.unwrap();
        let (status, body) = post(addr, "application/json", "{}").await;
        assert_eq!(status, 503);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("the broker did not acknowledge the events within 50ms"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_flight_then_refuses_connections() {
        // A loop that answers only after the shutdown started.
        let (tx, mut rx) = mpsc::channel::<Result<Submission>>(8);
        let stop = CancellationToken::new();
        let answer_after = stop.clone();
        tokio::spawn(async move {
            while let Some(Ok(submission)) = rx.recv().await {
                answer_after.cancelled().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let receipt = Receipt {
                    accepted: submission.inputs.len(),
                    ..Receipt::default()
                };
                submission.reply.unwrap().send(receipt).unwrap();
            }
        });
        let options = HttpOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 1024,
            ack_timeout: Duration::from_secs(5),
        };
        let (addr, task) = serve(&options, tx, stop.clone()).await.unwrap();
        let request = tokio::spawn(post(addr, "application/json", "[{},{}]"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        assert_eq!(
            request.await.unwrap(),
            (202, json!({"accepted": 2, "rejected": []}))
        );
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops once its requests are answered")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn the_server_stops_and_lets_go_of_the_channel() {
        let mut server = server(1024, false).await;
        server.stop.cancel();
        server.task.await.unwrap();
        // The stand-in loop ends (and drops its sender) only when every input sender is gone.
        assert!(server.seen.recv().await.is_none());
    }
}
