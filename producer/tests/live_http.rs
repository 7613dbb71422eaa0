//! Against a real broker (KAFKA_BROKERS): `producer live --http-addr 127.0.0.1:0` takes events
//! over HTTP (alone, and next to stdin), publishes or dead-letters them, answers once they are
//! acknowledged, and exits 0 on SIGTERM. Skipped with a notice when KAFKA_BROKERS is unset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::{consume, create_topic, dlq_reason, kafka, producer, text, unique};

/// A running `producer live` and the lines it wrote on stderr so far.
struct Live {
    child: Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Live {
    fn start(args: &[&str], stdin: Stdio) -> Self {
        let mut child = producer()
            .arg("live")
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = mpsc::channel();
        let pipe = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stderr,
            log: Vec::new(),
        }
    }

    /// Waits for the stderr line that holds `marker` and returns the text after it, up to the
    /// next `/` or space.
    fn wait_for(&mut self, marker: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no {marker:?} on stderr:\n{}", self.log.join("\n")));
            self.log.push(line.clone());
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.split(['/', ' ']).next().unwrap_or_default().to_owned();
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status, stdout and the log.
    fn terminate(&mut self) -> (ExitStatus, String, String) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut stdout = String::new();
        let pipe = self.child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(pipe).read_to_string(&mut stdout).unwrap();
            stdout
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = reader.join().unwrap();
        self.log.extend(self.stderr.try_iter());
        (status, stdout, self.log.join("\n"))
    }
}

/// A failed test must not leave its producer running.
impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A bare HTTP/1.1 exchange; returns the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, body.to_owned())
}

async fn post(addr: SocketAddr, content_type: &str, body: &str) -> (u16, Value) {
    let (status, body) = http(addr, "POST", "/events", content_type, body).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The value of the Prometheus sample whose line starts with `name{` and holds every label.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn http_events_are_published_or_dead_lettered() {
    let Some(kafka) = kafka() else { return };
    let topic = unique("http");
    let dead = unique("http-deadletter");
    create_topic(&kafka, &topic).await;
    create_topic(&kafka, &dead).await;
    let admin = format!("127.0.0.1:{}", free_port());
    let mut live = Live::start(
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            &admin,
            "--topic",
            &topic,
            "--dead-letter-topic",
            &dead,
            "--brokers",
            &kafka.brokers,
        ],
        Stdio::null(),
    );
    let addr: SocketAddr = live
        .wait_for("HTTP source listening on http://")
        .parse()
        .unwrap();

    // A JSON array: two valid events and one that is not an object.
    let array = [
        r#"{"trip_id":"h-1","event_time":"2022-02-01T08:00:00","fare_amount":7.5}"#,
        "[1, 2]",
        r#"{"lpep_pickup_datetime":"2022-02-01 08:01:00","fare_amount":9.0}"#,
    ];
    let body = format!("[\n  {}\n]", array.join(",\n  "));
    let (status, answer) = post(addr, "application/json", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"accepted": 2, "rejected": [
            {"index": 1, "reason": "http request 1 event 1: expected a JSON object, got an array"}
        ]})
    );

    // NDJSON: one valid line and one broken one.
    let lines = [
        r#"{"trip_id":"h-3","lpep_pickup_datetime":"2022-02-01T08:02:00"}"#,
        r#"{"fare_amount":"#,
    ];
    let (status, answer) = post(addr, "application/x-ndjson", &lines.join("\n")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["index"], 1);
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("http request 2 line 2: invalid JSON: EOF while parsing"),
        "{reason}"
    );

    assert_eq!(
        http(addr, "GET", "/healthz", "text/plain", "").await,
        (200, "ok\n".to_owned())
    );

    // A 202 means the broker has them: they are on the topics now.
    let (events, markers) = consume(&kafka, &topic, 3, |message| {
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(
            event["trip_id"].as_str().unwrap().as_bytes(),
            message.key().unwrap()
        );
        event
    })
    .await;
    assert_eq!(markers, 0, "live input has no end");
    assert_eq!(events[0]["trip_id"], "h-1");
    assert_eq!(events[0]["fare_amount"], 7.5);
    assert!(events[1]["trip_id"].as_str().unwrap().starts_with("live:"));
    assert_eq!(events[1]["event_time"], "2022-02-01T08:01:00");
    assert_eq!(events[2]["trip_id"], "h-3");
    assert_eq!(events[2]["event_time"], "2022-02-01T08:02:00");

    let (letters, _) = consume(&kafka, &dead, 2, |message| {
        (dlq_reason(message), text(message))
    })
    .await;
    assert_eq!(
        letters[0],
        (
            "http request 1 event 1: expected a JSON object, got an array".to_owned(),
            "[1, 2]".to_owned()
        )
    );
    assert_eq!(letters[1], (reason.to_owned(), lines[1].to_owned()));

    let (status, metrics) = http(admin.parse().unwrap(), "GET", "/metrics", "text/plain", "").await;
    assert_eq!(status, 200);
    let accepted = "streamwatch_producer_events_accepted_total";
    let rejected = "streamwatch_producer_events_rejected_total";
    assert_eq!(
        sample(&metrics, accepted, &["source=\"http\""]),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            rejected,
            &["source=\"http\"", "reason=\"not_an_object\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            rejected,
            &["source=\"http\"", "reason=\"invalid_json\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("streamwatch_producer_http_request_duration_seconds"),
        "{metrics}"
    );

    let (status, stdout, log) = live.terminate();
    assert!(status.success(), "{status}\n{stdout}\n{log}");
    assert!(
        stdout.contains("live events=3 delivered=3 failed=0")
            && stdout.contains("dead_lettered=2 interrupted=true"),
        "{stdout}"
    );
}

#[tokio::test]
async fn stdin_and_http_feed_the_same_publisher() {
    let Some(kafka) = kafka() else { return };
    let topic = unique("both");
    let dead = unique("both-deadletter");
    create_topic(&kafka, &topic).await;
    create_topic(&kafka, &dead).await;
    let mut live = Live::start(
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--stdin",
            "--topic",
            &topic,
            "--dead-letter-topic",
            &dead,
            "--brokers",
            &kafka.brokers,
        ],
        Stdio::piped(),
    );
    // stdin ends at once; the HTTP source keeps the producer running.
    let mut stdin = live.child.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"trip_id":"s-1","event_time":"2022-02-01T09:00:00"}}"#
    )
    .unwrap();
    drop(stdin);
    let addr: SocketAddr = live
        .wait_for("HTTP source listening on http://")
        .parse()
        .unwrap();

    // A body that is not JSON: 400, and the whole body is dead-lettered.
    let (status, answer) = post(addr, "application/json", r#"<trip id="h-1"/>"#).await;
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("the body is not JSON (http request 1: invalid JSON: expected value"),
        "{error}"
    );

    let (status, answer) = post(
        addr,
        "application/json",
        r#"{"trip_id":"h-2","event_time":"2022-02-01T09:01:00"}"#,
    )
    .await;
    assert_eq!(
        (status, answer),
        (202, json!({"accepted": 1, "rejected": []}))
    );

    let (mut ids, _) = consume(&kafka, &topic, 2, |message| {
        String::from_utf8(message.key().unwrap().to_vec()).unwrap()
    })
    .await;
    ids.sort();
    assert_eq!(ids, ["h-2", "s-1"]);
    let (letters, _) = consume(&kafka, &dead, 1, |message| {
        (dlq_reason(message), text(message))
    })
    .await;
    assert!(
        letters[0]
            .0
            .starts_with("http request 1: invalid JSON: expected value"),
        "{}",
        letters[0].0
    );
    assert_eq!(letters[0].1, r#"<trip id="h-1"/>"#);

    let (status, stdout, log) = live.terminate();
    assert!(status.success(), "{status}\n{stdout}\n{log}");
    assert!(
        stdout.contains("live events=2 delivered=2 failed=0")
            && stdout.contains("dead_lettered=1 interrupted=true"),
        "{stdout}"
    );
}

#[tokio::test]
async fn broker_refusals_are_answered_with_503() {
    let Some(kafka) = kafka() else { return };
    let dead = unique("refused-deadletter");
    create_topic(&kafka, &dead).await;
    let mut live = Live::start(
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--topic",
            "not a valid topic!",
            "--dead-letter-topic",
            &dead,
            "--brokers",
            &kafka.brokers,
        ],
        Stdio::null(),
    );
    let addr: SocketAddr = live
        .wait_for("HTTP source listening on http://")
        .parse()
        .unwrap();
    let (status, answer) = post(
        addr,
        "application/json",
        r#"[{"trip_id":"r-1","event_time":"2022-02-01T10:00:00"}, {"x":1}]"#,
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("1 event(s) or dead letter(s) were not acknowledged by the broker: "),
        "{error}"
    );
    assert_eq!(
        (&answer["accepted"], &answer["failed"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(answer["rejected"][0]["index"], 1);

    // The client was told, so the failure does not fail the run.
    let (status, stdout, log) = live.terminate();
    assert!(status.success(), "{status}\n{stdout}\n{log}");
    assert!(
        stdout.contains("live events=1 delivered=0 failed=1") && stdout.contains("dead_lettered=1"),
        "{stdout}"
    );
}
