//! Publishing to Kafka: many messages in flight, pacing by event time, and the run summary.
//! A replay publishes the trips and, when asked, their completions (the ground truth) to a
//! second topic, both in one event-time order.

use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use chrono::NaiveDateTime;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use streamwatch_common::kafka::KafkaArgs;
use streamwatch_common::telemetry::{serve_admin, Readiness};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ReplayArgs;
use crate::error::{Error, Result};
use crate::replay_output::{ReplayOutput, TopicIndex};
use crate::resume::{self, ResumePoint};
use crate::source::parquet::{CompletionOptions, ReplayOptions, TripEvents};
use crate::source::schedule::{Item, Schedule, Scheduled};

pub(crate) const STAGE: &str = "producer";
/// The replay's topics in its [`ReplayOutput`].
const TRIPS: TopicIndex = 0;
const COMPLETIONS: TopicIndex = 1;

/// Counter of the events (trips) the producer delivered, labelled `stage="producer"`.
pub const EVENTS_OUT_METRIC: &str = "streamwatch_events_out_total";
/// Counter of the completion events a replay delivered.
pub const COMPLETIONS_OUT_METRIC: &str = "streamwatch_producer_completions_total";

/// How many messages reached the broker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deliveries {
    /// Messages handed to the client (each ends delivered or failed).
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Failures reported to whoever sent the event (an HTTP client, who may retry); they do not
    /// fail the run.
    pub reported: u64,
}

impl Deliveries {
    /// Counts one delivery report.
    fn record<T: DeliveryTag>(&mut self, (tag, result): (T, DeliveryResult)) {
        let error = match result {
            Ok(Ok(_)) => {
                self.delivered += 1;
                metrics::counter!(EVENTS_OUT_METRIC, "stage" => STAGE).increment(1);
                tag.settle(Ok(()));
                return;
            }
            Ok(Err((error, _))) => error.to_string(),
            Err(_) => "the producer was dropped before the delivery report".to_owned(),
        };
        self.fail(&error, tag);
    }

    fn fail<T: DeliveryTag>(&mut self, error: &str, tag: T) {
        self.failed += 1;
        if tag.settle(Err(error)) {
            self.reported += 1;
        }
        metrics::counter!("streamwatch_delivery_failures_total", "stage" => STAGE).increment(1);
        // One line per failure would flood the log when the broker goes away.
        if self.failed == 1 || self.failed.is_power_of_two() {
            tracing::error!(failed = self.failed, %error, "event not delivered");
        }
    }
}

type DeliveryResult = Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>;

/// Travels with one message and is told how its delivery ended, so a caller can wait for its
/// own messages (an HTTP request for its events) while the publisher keeps many in flight.
pub trait DeliveryTag: Unpin {
    /// `outcome` is `Err` with the broker's error when the message was not delivered. Returns
    /// whether that failure reaches someone who can retry.
    fn settle(self, outcome: Result<(), &str>) -> bool;
}

impl<T: DeliveryTag> DeliveryTag for Option<T> {
    fn settle(self, outcome: Result<(), &str>) -> bool {
        self.is_some_and(|tag| tag.settle(outcome))
    }
}

/// A delivery report together with its message's tag.
struct Tagged<T> {
    tag: Option<T>,
    delivery: DeliveryFuture,
}

impl<T: Unpin> Future for Tagged<T> {
    type Output = (T, DeliveryResult);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(self.delivery.poll_unpin(cx));
        let tag = self
            .tag
            .take()
            .expect("a delivery is not polled after it completed");
        Poll::Ready((tag, result))
    }
}

/// Publishes live input to one topic without waiting for each acknowledgement;
/// [`Publisher::finish`] waits for all of them. Each message carries a [`DeliveryTag`], so its
/// sender (an HTTP request) gets its answer. A replay, which needs no answer per message, goes
/// through [`crate::replay_output::ReplayOutput`].
pub struct Publisher<T> {
    producer: FutureProducer,
    topic: String,
    in_flight: FuturesUnordered<Tagged<T>>,
    deliveries: Deliveries,
}

impl<T: DeliveryTag> Publisher<T> {
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
            in_flight: FuturesUnordered::new(),
            deliveries: Deliveries::default(),
        }
    }

    /// Queues one message (the client copies key and payload); `tag` is settled when its
    /// delivery ends. When the client's queue is full it waits for earlier deliveries instead
    /// of failing.
    pub async fn send_tagged(&mut self, key: &[u8], payload: &[u8], tag: T) {
        let Self {
            producer,
            topic,
            in_flight,
            deliveries,
        } = self;
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).key(key).payload(payload);
        deliveries.sent += 1;
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push(Tagged {
                        tag: Some(tag),
                        delivery,
                    });
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    match in_flight.next().await {
                        Some(result) => deliveries.record(result),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((error, _)) => {
                    deliveries.fail(&error.to_string(), tag);
                    break;
                }
            }
        }
        // Collect the reports that are already in, so a long live run holds few futures.
        while let Some(Some(result)) = in_flight.next().now_or_never() {
            deliveries.record(result);
        }
    }

    /// Messages queued whose delivery has not ended yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits for the next delivery report and settles its tag; `false` when nothing is in
    /// flight. A live run calls it between inputs so that waiting senders get their answers.
    pub async fn settle_next(&mut self) -> bool {
        match self.in_flight.next().await {
            Some(result) => {
                self.deliveries.record(result);
                true
            }
            None => false,
        }
    }

    /// Waits until every queued message is delivered or has failed.
    pub async fn finish(mut self) -> Deliveries {
        while self.settle_next().await {}
        self.deliveries
    }
}

/// Spreads a replay over wall-clock time: an event is due `(event_time - first) / speed` after
/// the start. Times are computed from an anchor, not by adding up sleeps, so rounding never
/// accumulates; a gap that would pause longer than `max_pause` is cut to it and the anchor moves.
#[derive(Debug, Clone)]
pub struct Pacer {
    speed: f64,
    max_pause: Duration,
    anchor: Option<(NaiveDateTime, Duration)>,
    last: Duration,
}

impl Pacer {
    pub fn new(speed: f64, max_pause: Duration) -> Self {
        Self {
            speed,
            max_pause,
            anchor: None,
            last: Duration::ZERO,
        }
    }

    /// How long after the start of the replay the event is due; `None` when speed is 0
    /// (publish at once). Never earlier than the previous event.
    pub fn due(&mut self, event_time: NaiveDateTime) -> Option<Duration> {
        if self.speed <= 0.0 {
            return None;
        }
        let (anchor_time, anchor_due) = *self.anchor.get_or_insert((event_time, Duration::ZERO));
        let gap = (event_time - anchor_time).to_std().unwrap_or_default();
        let mut due = anchor_due + gap.div_f64(self.speed);
        let latest = self.last + self.max_pause;
        if due > latest {
            due = latest;
            self.anchor = Some((event_time, due));
        }
        self.last = due.max(self.last);
        Some(self.last)
    }
}

/// The completion events of a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompletionCounts {
    /// Completions of the replayed trips (one per trip with a completion time).
    pub total: u64,
    /// Completions found already published and not sent again (resume).
    pub already_published: u64,
    pub deliveries: Deliveries,
    /// Replayed trips without a completion time, which got no completion event.
    pub no_completion_time: u64,
}

/// What a run skipped, by mode.
#[derive(Debug, Clone, Copy)]
pub enum Skipped {
    /// The trips of the replay (in range, within the limit), those found already published
    /// (resume), rows without an event time, and rows outside `[from, to)`; with completions
    /// on, what became of them.
    Replay {
        events: u64,
        already_published: u64,
        null_event_time: u64,
        outside_range: u64,
        completions: Option<CompletionCounts>,
    },
    /// Invalid lines sent to the dead-letter topic.
    Live { dead_lettered: u64 },
}

/// The line printed at the end of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub deliveries: Deliveries,
    pub seconds: f64,
    pub skipped: Skipped,
    pub interrupted: bool,
}

impl Summary {
    fn mode(&self) -> &'static str {
        match self.skipped {
            Skipped::Replay { .. } => "replay",
            Skipped::Live { .. } => "live",
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.deliveries;
        let rate = if self.seconds > 0.0 {
            d.delivered as f64 / self.seconds
        } else {
            0.0
        };
        // A replay's events are the trips of its range; a resumed one sends only part of them.
        match self.skipped {
            Skipped::Replay {
                events,
                already_published,
                ..
            } => write!(
                f,
                "replay events={events} already_published={already_published} sent={} ",
                d.sent
            )?,
            Skipped::Live { .. } => write!(f, "live events={} ", d.sent)?,
        }
        write!(
            f,
            "delivered={} failed={} seconds={:.3} events_per_second={:.0} ",
            d.delivered, d.failed, self.seconds, rate
        )?;
        match self.skipped {
            Skipped::Replay {
                null_event_time,
                outside_range,
                completions,
                ..
            } => {
                write!(
                    f,
                    "skipped_null_event_time={null_event_time} outside_range={outside_range}"
                )?;
                if let Some(c) = completions {
                    write!(
                        f,
                        " completions={} completions_already_published={} completions_sent={} \
                         completions_delivered={} completions_failed={} no_completion_time={}",
                        c.total,
                        c.already_published,
                        c.deliveries.sent,
                        c.deliveries.delivered,
                        c.deliveries.failed,
                        c.no_completion_time
                    )?;
                }
            }
            Skipped::Live { dead_lettered } => write!(f, "dead_lettered={dead_lettered}")?,
        }
        write!(f, " interrupted={}", self.interrupted)
    }
}

impl Summary {
    /// Prints the summary on stdout; a run with undelivered events fails, unless every failure
    /// was reported to the events' sender (an HTTP client).
    pub(crate) fn report(self, topic: &str) -> Result<()> {
        self.report_to(topic, None)
    }

    /// [`Summary::report`] for a replay whose completions went to `completions_topic`: their
    /// delivery failures fail the run too.
    pub(crate) fn report_to(self, topic: &str, completions_topic: Option<&str>) -> Result<()> {
        println!("{self}");
        let completions = match self.skipped {
            Skipped::Replay {
                completions: Some(c),
                ..
            } => c,
            _ => CompletionCounts::default(),
        };
        let (events, already_published) = match self.skipped {
            Skipped::Replay {
                events,
                already_published,
                ..
            } => (events, already_published),
            Skipped::Live { .. } => (self.deliveries.sent, 0),
        };
        tracing::info!(
            mode = self.mode(),
            events,
            already_published,
            sent = self.deliveries.sent,
            delivered = self.deliveries.delivered,
            failed = self.deliveries.failed,
            completions_already_published = completions.already_published,
            completions_sent = completions.deliveries.sent,
            completions_delivered = completions.deliveries.delivered,
            completions_failed = completions.deliveries.failed,
            seconds = self.seconds,
            "run finished"
        );
        if self.deliveries.failed > self.deliveries.reported {
            return Err(Error::Delivery {
                topic: topic.to_owned(),
                failed: self.deliveries.failed,
                sent: self.deliveries.sent,
            });
        }
        if completions.deliveries.failed > 0 {
            return Err(Error::Delivery {
                topic: completions_topic.unwrap_or_default().to_owned(),
                failed: completions.deliveries.failed,
                sent: completions.deliveries.sent,
            });
        }
        Ok(())
    }
}

pub(crate) async fn start_admin(
    admin: &streamwatch_common::telemetry::AdminArgs,
    shutdown: &CancellationToken,
) -> Result<Readiness> {
    let readiness = Readiness::default();
    serve_admin(STAGE, admin, readiness.clone(), shutdown.clone()).await?;
    Ok(readiness)
}

/// A producer, after checking that a broker answers (a clear error instead of silent retries).
pub(crate) async fn connect(kafka: &KafkaArgs) -> Result<FutureProducer> {
    check_broker(kafka).await?;
    Ok(kafka.producer()?)
}

/// Checks that a broker answers.
async fn check_broker(kafka: &KafkaArgs) -> Result<()> {
    let probe = kafka.clone();
    tokio::task::spawn_blocking(move || probe.check_reachable()).await??;
    Ok(())
}

fn progress_bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(
        "{wide_bar} {pos}/{len} events [{elapsed_precise}, {per_sec}, eta {eta}]",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Replays a Parquet file to Kafka, with the trips' completions when a completions topic is
/// given; on SIGINT/SIGTERM it stops, flushes what is queued and reports.
pub async fn replay(args: ReplayArgs, shutdown: CancellationToken) -> Result<()> {
    let completions_topic = args.completions_topic();
    if completions_topic == Some(args.topic.as_str()) {
        return Err(Error::CompletionsTopic {
            topic: args.topic.clone(),
        });
    }
    let readiness = start_admin(&args.admin, &shutdown).await?;
    let started = std::time::Instant::now();
    let path = args.file.clone();
    let options = ReplayOptions {
        time_column: args.time_column.clone(),
        required_columns: args.required_columns.clone(),
        from: args.from,
        to: args.to,
        limit: args.limit,
        completions: completions_topic.map(|_| CompletionOptions {
            time_column: args.completion_time_column.clone(),
            truth_field: args.truth_field.clone(),
        }),
    };
    let events = tokio::task::spawn_blocking(move || TripEvents::load(&path, &options)).await??;
    let stats = events.stats();
    tracing::info!(
        file = %args.file.display(),
        rows = stats.rows,
        events = events.len(),
        null_event_time = stats.null_event_time,
        outside_range = stats.outside_range,
        over_limit = stats.over_limit,
        seconds = started.elapsed().as_secs_f64(),
        "trips loaded"
    );
    if stats.null_event_time > 0 {
        tracing::warn!(
            rows = stats.null_event_time,
            column = %args.time_column,
            "rows without an event time skipped"
        );
    }
    if let (Some(topic), Some(column)) = (completions_topic, events.completion_column()) {
        tracing::info!(
            topic,
            column,
            truth = %args.truth_field,
            no_completion_time = stats.no_completion_time,
            early_completions = stats.early_completions,
            "completions on: one per trip at its completion time (early ones before their trip)"
        );
        if stats.no_completion_time > 0 {
            tracing::warn!(
                trips = stats.no_completion_time,
                column,
                "trips without a completion time get no completion"
            );
        }
    }

    check_broker(&args.kafka).await?;
    let mut topics = vec![(args.topic.as_str(), EVENTS_OUT_METRIC)];
    topics.extend(completions_topic.map(|topic| (topic, COMPLETIONS_OUT_METRIC)));
    let mut output = ReplayOutput::new(&args.kafka, &topics)?;
    let resume = if args.resumes() {
        resume::find(
            &args.kafka,
            &args.topic,
            completions_topic,
            &events,
            &shutdown,
        )
        .await?
    } else {
        tracing::info!(
            events = events.len(),
            "resume off (--no-resume): replaying the whole range"
        );
        Some(ResumePoint::default())
    };
    // A signal while the topics were read: nothing was sent.
    let interrupted_early = resume.is_none();
    let resume = resume.unwrap_or_default();
    readiness.set(true);
    let mut pacer = Pacer::new(args.speed, Duration::from_secs_f64(args.max_pause));
    let progress = progress_bar(events.len());
    progress.set_position(resume.trips as u64);
    let publish_start = Instant::now();
    let (mut key, mut payload) = (String::new(), Vec::with_capacity(1024));
    let mut interrupted = interrupted_early;
    let mut outcome = Ok(());
    // Whatever precedes the resume point is already published: skipped without pacing, so the
    // first event sent is due at once and the pacing goes on from its event time.
    let schedule = (!interrupted_early)
        .then(|| Schedule::new(&events).skip(resume.items))
        .into_iter()
        .flatten();
    for Scheduled { time, item } in schedule {
        if let Some(due) = pacer.due(time) {
            let due = publish_start + due;
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        if shutdown.is_cancelled() {
            interrupted = true;
            break;
        }
        match item {
            Item::Trip(i) => {
                if let Err(error) = events.write_event(i, &mut key, &mut payload) {
                    outcome = Err(error);
                    break;
                }
                output.send(TRIPS, key.as_bytes(), &payload).await;
                if i % 1024 == 0 {
                    progress.set_position(i as u64);
                }
            }
            Item::Completion(i) => {
                // The schedule has completions only when they are on.
                if events.write_completion(i, &mut key, &mut payload) {
                    output.send(COMPLETIONS, key.as_bytes(), &payload).await;
                }
            }
        }
    }
    progress.finish_and_clear();
    tracing::info!(
        seconds = publish_start.elapsed().as_secs_f64(),
        "events encoded and queued; waiting for the broker's acknowledgements"
    );
    output.flush().await;
    let deliveries = output.deliveries(TRIPS);
    let completions = completions_topic.map(|_| CompletionCounts {
        total: (events.len() as u64).saturating_sub(stats.no_completion_time),
        already_published: resume.completions as u64,
        deliveries: output.deliveries(COMPLETIONS),
        no_completion_time: stats.no_completion_time,
    });
    let complete = !interrupted
        && outcome.is_ok()
        && deliveries.failed == 0
        && completions
            .as_ref()
            .is_none_or(|c| c.deliveries.failed == 0);
    if complete {
        output.end_streams().await;
    }
    readiness.set(false);
    let summary = Summary {
        deliveries,
        seconds: started.elapsed().as_secs_f64(),
        skipped: Skipped::Replay {
            events: events.len() as u64,
            already_published: resume.trips as u64,
            null_event_time: stats.null_event_time,
            outside_range: stats.outside_range,
            completions,
        },
        interrupted,
    };
    outcome?;
    summary.report_to(&args.topic, completions_topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> NaiveDateTime {
        crate::config::parse_time_bound(text).unwrap()
    }

    #[test]
    fn speed_zero_never_waits() {
        let mut pacer = Pacer::new(0.0, Duration::from_secs(5));
        assert_eq!(pacer.due(ts("2022-02-01")), None);
        assert_eq!(pacer.due(ts("2022-02-02")), None);
    }

    #[test]
    fn event_time_gaps_are_divided_by_the_speed() {
        let mut pacer = Pacer::new(3600.0, Duration::from_secs(5));
        assert_eq!(pacer.due(ts("2022-02-01T00:00:00")), Some(Duration::ZERO));
        assert_eq!(
            pacer.due(ts("2022-02-01T01:00:00")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            pacer.due(ts("2022-02-01T02:30:00")),
            Some(Duration::from_millis(2500))
        );
        // An event earlier than the previous one is due at once, not in the past.
        assert_eq!(
            pacer.due(ts("2022-02-01T02:00:00")),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn long_gaps_are_cut_to_the_max_pause() {
        let mut pacer = Pacer::new(3600.0, Duration::from_secs(5));
        assert_eq!(pacer.due(ts("2009-01-01T00:02:32")), Some(Duration::ZERO));
        assert_eq!(
            pacer.due(ts("2022-02-01T00:00:00")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            pacer.due(ts("2022-02-01T01:00:00")),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn many_small_gaps_do_not_drift() {
        let mut pacer = Pacer::new(7.0, Duration::from_secs(5));
        let start = ts("2022-02-01");
        let mut due = Duration::ZERO;
        for ms in 0..=100_000 {
            due = pacer
                .due(start + chrono::Duration::milliseconds(ms))
                .unwrap();
        }
        let exact = 100.0 / 7.0;
        assert!((due.as_secs_f64() - exact).abs() < 1e-6, "{due:?}");
    }

    #[test]
    fn summary_line() {
        let summary = Summary {
            deliveries: Deliveries {
                sent: 500,
                delivered: 500,
                failed: 0,
                reported: 0,
            },
            seconds: 0.25,
            skipped: Skipped::Replay {
                events: 500,
                already_published: 0,
                null_event_time: 1,
                outside_range: 23,
                completions: None,
            },
            interrupted: false,
        };
        assert_eq!(
            summary.to_string(),
            "replay events=500 already_published=0 sent=500 delivered=500 failed=0 \
             seconds=0.250 events_per_second=2000 skipped_null_event_time=1 outside_range=23 \
             interrupted=false"
        );
        // Resumed: the events of the range, those found published, those sent.
        let with_completions = Summary {
            deliveries: Deliveries {
                sent: 300,
                delivered: 300,
                failed: 0,
                reported: 0,
            },
            skipped: Skipped::Replay {
                events: 520,
                already_published: 220,
                null_event_time: 1,
                outside_range: 23,
                completions: Some(CompletionCounts {
                    total: 518,
                    already_published: 20,
                    deliveries: Deliveries {
                        sent: 498,
                        delivered: 497,
                        failed: 1,
                        reported: 0,
                    },
                    no_completion_time: 2,
                }),
            },
            ..summary.clone()
        };
        assert_eq!(
            with_completions.to_string(),
            "replay events=520 already_published=220 sent=300 delivered=300 failed=0 \
             seconds=0.250 events_per_second=1200 skipped_null_event_time=1 outside_range=23 \
             completions=518 completions_already_published=20 completions_sent=498 \
             completions_delivered=497 completions_failed=1 no_completion_time=2 \
             interrupted=false"
        );
        let error = with_completions
            .report_to("trips", Some("completions"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "1 of 498 events could not be delivered to topic completions"
        );
        let live = Summary {
            skipped: Skipped::Live { dead_lettered: 2 },
            interrupted: true,
            ..summary
        };
        assert_eq!(
            live.to_string(),
            "live events=500 delivered=500 failed=0 seconds=0.250 events_per_second=2000 \
             dead_lettered=2 interrupted=true"
        );
    }
}
