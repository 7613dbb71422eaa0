//! Live mode: every source (stdin, HTTP) feeds one channel of [`Submission`]s; one loop
//! validates each input, publishes the events, dead-letters the rejections and answers the
//! sources that wait (HTTP) once the broker acknowledged their events.

use std::sync::{Arc, Mutex, PoisonError};

use streamwatch_common::deadletter::DeadLetters;
use streamwatch_common::telemetry::PROCESSING_SECONDS;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::LiveArgs;
use crate::error::{Error, Result};
use crate::publish::{self, DeliveryTag, Publisher, Skipped, Summary, STAGE};
use crate::source::http;
use crate::source::live::{self, LiveIds, LiveRules, Receipt, Rejected, Rejection, Submission};

/// Builds one submission's [`Receipt`] and sends it once the submission is fully read
/// (`seal`) and each accepted event's delivery has ended.
#[derive(Clone)]
struct Ack(Arc<Mutex<Pending>>);

struct Pending {
    receipt: Receipt,
    unsettled: usize,
    sealed: bool,
    reply: Option<oneshot::Sender<Receipt>>,
}

impl Ack {
    fn new(reply: oneshot::Sender<Receipt>) -> Self {
        Self(Arc::new(Mutex::new(Pending {
            receipt: Receipt::default(),
            unsettled: 0,
            sealed: false,
            reply: Some(reply),
        })))
    }

    fn update(&self, change: impl FnOnce(&mut Pending)) {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut pending);
        if pending.sealed && pending.unsettled == 0 {
            if let Some(reply) = pending.reply.take() {
                // The sender may have given up (timeout, closed connection): nothing to do.
                let _ = reply.send(std::mem::take(&mut pending.receipt));
            }
        }
    }

    /// An event handed to the publisher; its tag settles it.
    fn accept(&self) {
        self.update(|p| {
            p.receipt.accepted += 1;
            p.unsettled += 1;
        });
    }

    fn reject(&self, index: usize, rejection: Rejection) {
        self.update(|p| {
            p.receipt.rejected.push(Rejected {
                index,
                kind: rejection.kind,
                reason: rejection.reason,
            })
        });
    }

    fn fail(&self, error: String) {
        self.update(|p| {
            p.receipt.failed += 1;
            p.receipt.error.get_or_insert(error);
        });
    }

    /// Every input of the submission is handled; the receipt goes out when the last delivery
    /// ends (at once when none is pending).
    fn seal(&self) {
        self.update(|p| p.sealed = true);
    }
}

impl DeliveryTag for Ack {
    fn settle(self, outcome: Result<(), &str>) -> bool {
        self.update(|p| {
            p.unsettled -= 1;
            if let Err(error) = outcome {
                p.receipt.failed += 1;
                p.receipt.error.get_or_insert_with(|| error.to_owned());
            }
        });
        true
    }
}

/// Validation and publishing, shared by every source.
struct Ingest {
    rules: LiveRules,
    ids: LiveIds,
    publisher: Publisher<Option<Ack>>,
    dead_letters: DeadLetters,
    dead_lettered: u64,
}

impl Ingest {
    /// Publishes or dead-letters each input of `submission`. A dead letter that cannot be
    /// written is reported to a waiting sender; with no one waiting (stdin) it ends the run.
    async fn submit(&mut self, submission: Submission) -> Result<()> {
        let Submission {
            source,
            inputs,
            reply,
        } = submission;
        let ack = reply.map(Ack::new);
        for (index, input) in inputs.iter().enumerate() {
            match live::validate(input, &self.rules, &mut self.ids) {
                Ok(event) => {
                    metrics::counter!(
                        "streamwatch_producer_events_accepted_total",
                        "source" => source.as_str()
                    )
                    .increment(1);
                    if let Some(ack) = &ack {
                        ack.accept();
                    }
                    self.publisher
                        .send_tagged(event.trip_id.as_bytes(), &event.payload, ack.clone())
                        .await;
                }
                Err(rejection) => {
                    metrics::counter!(
                        "streamwatch_producer_events_rejected_total",
                        "source" => source.as_str(),
                        "reason" => rejection.kind
                    )
                    .increment(1);
                    let sent = self
                        .dead_letters
                        .send(rejection.kind, &rejection.reason, None, None, &input.bytes)
                        .await;
                    match (sent, &ack) {
                        (Ok(()), _) => self.dead_lettered += 1,
                        (Err(error), Some(ack)) => ack.fail(error.to_string()),
                        (Err(error), None) => return Err(error.into()),
                    }
                    if let Some(ack) = &ack {
                        ack.reject(index, rejection);
                    }
                }
            }
        }
        if let Some(ack) = &ack {
            ack.seal();
        }
        Ok(())
    }
}

/// Publishes live JSON events from stdin and/or HTTP until every source has ended (stdin at
/// EOF; both at SIGINT/SIGTERM, HTTP after finishing its requests in flight); invalid events go
/// to the dead-letter topic with their reason. Prints the summary at the end.
pub async fn live(args: LiveArgs, shutdown: CancellationToken) -> Result<()> {
    let reads_stdin = args.reads_stdin();
    if !reads_stdin && args.http.http_addr.is_none() {
        return Err(Error::NoLiveSource);
    }
    let rules = LiveRules::new(&args)?;
    let readiness = publish::start_admin(&args.admin, &shutdown).await?;
    let started = std::time::Instant::now();
    let producer = publish::connect(&args.kafka).await?;
    let dead_letters = DeadLetters::new(producer.clone(), args.dead_letter_topic.clone(), STAGE);

    // Sources stop on a signal, or when the run fails.
    let stop = shutdown.child_token();
    let (tx, mut inputs) = mpsc::channel(1024);
    let server = match args.http.http_addr {
        Some(addr) => {
            let options = http::HttpOptions {
                addr,
                max_body_bytes: args.http.http_max_body_bytes,
                ack_timeout: args.http.http_ack_timeout,
            };
            Some(http::serve(&options, tx.clone(), stop.clone()).await?.1)
        }
        None => None,
    };
    if reads_stdin {
        live::spawn_stdin(tx.clone(), stop.clone())?;
    }
    // The loop ends when the last source lets go of its sender.
    drop(tx);
    readiness.set(true);
    tokio::spawn({
        let (readiness, stop) = (readiness.clone(), stop.clone());
        async move {
            stop.cancelled().await;
            readiness.set(false);
        }
    });

    let mut ingest = Ingest {
        rules,
        ids: LiveIds::new(chrono::Utc::now()),
        publisher: Publisher::new(producer, args.topic.clone()),
        dead_letters,
        dead_lettered: 0,
    };
    let mut outcome = Ok(());
    // Per submission (an HTTP request's events, a stdin line): validation, queueing the events
    // for the broker and writing the dead letters; not the wait for acknowledgements.
    let processing = metrics::histogram!(PROCESSING_SECONDS, "stage" => STAGE);
    loop {
        tokio::select! {
            // Deliveries are collected between inputs too, so waiting requests get answers.
            true = ingest.publisher.settle_next(), if ingest.publisher.in_flight() > 0 => {}
            submission = inputs.recv() => match submission {
                None => break,
                Some(Ok(submission)) => {
                    let started = std::time::Instant::now();
                    if let Err(error) = ingest.submit(submission).await {
                        outcome = Err(error);
                        break;
                    }
                    processing.record(started.elapsed());
                }
                Some(Err(error)) => {
                    outcome = Err(error);
                    break;
                }
            },
        }
    }
    // After a failure: stop the sources; requests still queued are answered 503 when their
    // reply sender is dropped with the channel.
    stop.cancel();
    drop(inputs);
    let interrupted = shutdown.is_cancelled();
    let Ingest {
        publisher,
        dead_lettered,
        ..
    } = ingest;
    let deliveries = publisher.finish().await;
    if let Some(server) = server {
        server.await?;
    }
    readiness.set(false);
    let summary = Summary {
        deliveries,
        seconds: started.elapsed().as_secs_f64(),
        skipped: Skipped::Live { dead_lettered },
        interrupted,
    };
    outcome?;
    summary.report(&args.topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(reason: &str) -> Rejection {
        Rejection {
            kind: "invalid_json",
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn the_receipt_waits_for_every_delivery() {
        let (tx, mut rx) = oneshot::channel();
        let ack = Ack::new(tx);
        ack.accept();
        ack.reject(1, rejection("event 1: bad"));
        ack.accept();
        ack.seal();
        assert!(rx.try_recv().is_err(), "two deliveries are pending");
        assert!(ack.clone().settle(Ok(())));
        assert!(rx.try_recv().is_err(), "one delivery is pending");
        assert!(ack.settle(Err("Local: Message timed out")));
        let receipt = rx.try_recv().unwrap();
        assert_eq!(receipt.accepted, 2);
        assert_eq!(receipt.failed, 1);
        assert_eq!(receipt.error.as_deref(), Some("Local: Message timed out"));
        assert_eq!(
            receipt.rejected,
            [Rejected {
                index: 1,
                kind: "invalid_json",
                reason: "event 1: bad".into()
            }]
        );
    }

    #[test]
    fn deliveries_before_the_seal_do_not_answer_early() {
        let (tx, mut rx) = oneshot::channel();
        let ack = Ack::new(tx);
        ack.accept();
        ack.clone().settle(Ok(()));
        assert!(rx.try_recv().is_err(), "more inputs may follow");
        ack.fail("could not write to dead-letter topic d: boom".into());
        ack.seal();
        let receipt = rx.try_recv().unwrap();
        assert_eq!((receipt.accepted, receipt.failed), (1, 1));
        assert_eq!(
            receipt.error.as_deref(),
            Some("could not write to dead-letter topic d: boom")
        );
    }

    #[test]
    fn an_empty_submission_is_answered_at_the_seal() {
        let (tx, mut rx) = oneshot::channel();
        Ack::new(tx).seal();
        assert_eq!(rx.try_recv().unwrap(), Receipt::default());
    }
}
