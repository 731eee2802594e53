//! One SQS message: its notification, each object it names, and the delete that
//! happens only once every object was read to its end and every alert delivered.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::admission::{self, MessageMeta};
use super::evaluate;
use super::notification::{self, Notification, ObjectRef};
use super::{Source, State};

use crate::alert::{Alert, SourceRef};
use crate::input;
use crate::metrics::Counter;
use crate::metrics::events::{
    DeleteFailed, FileFailed, InternalEvent, MessageKept, NotificationRejected,
    NotificationUnreadable, ObjectFiltered, SinkDeliveryFailed, VisibilityChangeFailed,
};
use crate::sinks::SinkError;
use crate::state::ObjectId;

/// Alerts are handed from the reading thread to delivery through a bounded channel,
/// so a file with many alerts never holds them all in memory.
const ALERT_CHANNEL: usize = 1024;
/// Alerts per sink delivery.
const DELIVERY_BATCH: usize = 100;

/// Why an object failed.
#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error(transparent)]
    Fetch(#[from] input::s3::FetchError),
    #[error("reading s3://{bucket}/{key}: {error}")]
    Read {
        bucket: String,
        key: String,
        error: input::StreamError,
    },
    #[error("s3://{bucket}/{key}: none of its {records} records is a valid CloudTrail record")]
    NoValidRecords {
        bucket: String,
        key: String,
        records: u64,
    },
    #[error("delivering alerts for s3://{bucket}/{key}: {error}")]
    Deliver {
        bucket: String,
        key: String,
        error: SinkError,
    },
    #[error("detection state: {0}; the file is retried")]
    State(String),
    #[error("s3://{bucket}/{key}: processing task failed: {0}", .message)]
    Task {
        bucket: String,
        key: String,
        message: String,
    },
}

/// Processes one message to the end; the permit bounds files in flight.
pub(super) async fn message(
    state: Arc<State>,
    source: Arc<Source>,
    msg: Message,
    _permit: OwnedSemaphorePermit,
) {
    let id = msg.message_id.clone().unwrap_or_default();
    let Some(receipt) = msg.receipt_handle.clone() else {
        tracing::warn!(message_id = %id, "message without a receipt handle; ignoring");
        return;
    };
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
    let attr = |name: Attr| msg.attributes.as_ref().and_then(|a| a.get(&name)).cloned();
    let receives = attr(Attr::ApproximateReceiveCount).unwrap_or_default();
    let meta = MessageMeta {
        queue_url: source.queue.url().to_owned(),
        message_id: id.clone(),
        sender_id: attr(Attr::SenderId),
        sent_ms: attr(Attr::SentTimestamp).and_then(|t| t.parse().ok()),
    };
    state
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), (source.queue.url().to_owned(), receipt.clone()));
    let heartbeat = tokio::spawn(heartbeat(state.clone(), source.clone(), receipt.clone()));

    let ok = handle(&state, &source, &meta, msg.body.as_deref().unwrap_or("")).await;

    heartbeat.abort();
    if ok {
        delete(&state, &source, &id, &receipt).await;
    } else {
        MessageKept {
            message_id: &id,
            receive_count: &receives,
            retry_in: source.retry_delay,
        }
        .emit(&state.metrics);
        set_visibility(&state, &source, &receipt, source.retry_delay).await;
        let due = std::time::Instant::now() + source.retry_delay;
        let mut d = state.retry_due.lock().unwrap_or_else(|e| e.into_inner());
        *d = Some(d.map_or(due, |t| t.max(due)));
    }
    state
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// Whether the message is done with (processed, or nothing to process).
async fn handle(state: &State, source: &Source, meta: &MessageMeta, body: &str) -> bool {
    let id = meta.message_id.as_str();
    let objects = match notification::parse(body) {
        Ok(Notification::Objects(o)) => o,
        Ok(Notification::TestEvent) => {
            tracing::info!(message_id = %id, "s3:TestEvent received (the bucket notification works); deleting it");
            return true;
        }
        Ok(Notification::Validation) => {
            tracing::info!(message_id = %id, "CloudTrail validation message received; deleting it");
            return true;
        }
        Ok(Notification::NothingToDo(why)) => {
            tracing::debug!(message_id = %id, reason = ?why, "notification names no new objects; deleting it");
            return true;
        }
        Err(e) => {
            NotificationUnreadable {
                message_id: id,
                error: &e,
                body,
            }
            .emit(&state.metrics);
            return false;
        }
    };
    let mut ok = true;
    let mut rejected = Vec::new();
    for (n, obj) in objects.into_iter().enumerate() {
        if let Err(why) = source.admission.check(&obj) {
            NotificationRejected {
                message_id: id,
                sender_id: meta.sender_id.as_deref(),
                bucket: &obj.bucket,
                key: &obj.key,
                reason: &why,
            }
            .emit(&state.metrics);
            rejected.push((n, admission::rejection_event(meta, n, &obj, &why)));
            continue;
        }
        if !source.wanted(&obj.key) {
            ObjectFiltered {
                bucket: &obj.bucket,
                key: &obj.key,
            }
            .emit(&state.metrics);
            continue;
        }
        let done = object(state, source, &obj).await;
        // Readiness follows detection state: down from a file it failed, up again
        // with the next file it answered for.
        match &done {
            Ok(()) => state.health.state_ok(),
            Err(ObjectError::State(text)) => state.health.state_failed(text),
            Err(_) => {}
        }
        if let Err(e) = done {
            ok = false;
            FileFailed {
                message_id: id,
                bucket: &obj.bucket,
                key: &obj.key,
                error: &e,
            }
            .emit(&state.metrics);
        }
    }
    if !rejected.is_empty()
        && let Err(e) = raise_rejections(state, meta, rejected).await
    {
        ok = false;
        tracing::error!(message_id = %id, error = %e, "the alert for a rejected notification was not delivered; the message is kept");
    }
    ok
}

/// Delivers the built-in rule's alerts for the rejected objects of one message,
/// each with its place in the message.
async fn raise_rejections(
    state: &State,
    meta: &MessageMeta,
    events: Vec<(usize, crate::record::Event)>,
) -> Result<(), SinkError> {
    let source = format!("sqs:{}/{}", meta.queue_url, meta.message_id);
    let mut alerts = Vec::new();
    {
        let mut engine = state.forged.lock().unwrap_or_else(|e| e.into_inner());
        let mut detections = Vec::new();
        for (n, e) in &events {
            detections.clear();
            engine.evaluate(e, &mut detections);
            for d in &detections {
                let rule = &engine.rules()[d.rule];
                alerts.push(Arc::new(Alert::new(
                    rule,
                    d,
                    e,
                    SourceRef::file(&source, *n as u64),
                )));
            }
        }
    }
    let (tx, rx) = mpsc::channel(alerts.len().max(1));
    for a in alerts {
        let _ = tx.try_send(a);
    }
    drop(tx);
    deliver(rx, state, &AtomicBool::new(false)).await
}

/// Asks detection state on a blocking thread (a backend's calls block), handing
/// the handle back.
async fn ask<T: Send + 'static>(
    st: Box<dyn crate::state::State + Send>,
    f: impl FnOnce(&mut dyn crate::state::State) -> T + Send + 'static,
) -> Result<(Box<dyn crate::state::State + Send>, T), ObjectError> {
    tokio::task::spawn_blocking(move || {
        let mut st = st;
        let out = f(&mut *st);
        (st, out)
    })
    .await
    .map_err(|e| ObjectError::State(e.to_string()))
}

/// Reads one object through the engine and delivers its alerts.
async fn object(state: &State, source: &Source, obj: &ObjectRef) -> Result<(), ObjectError> {
    let (bucket, mut key) = (obj.bucket.clone(), obj.key.clone());
    let rules = state
        .engine
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // Detection state that does not answer holds the file (see state::Retrying).
    let stopping = state.stopping.clone();
    let health = state.health.clone();
    let mut st: Box<dyn crate::state::State + Send> = Box::new(crate::state::Retrying::new(
        state.detection.handle(),
        Arc::new(move || stopping.load(Ordering::SeqCst)),
        Arc::new(
            move |e: Option<&crate::engine::windows::StoreError>| match e {
                Some(e) => health.state_failed(&e.to_string()),
                None => health.state_ok(),
            },
        ),
    ));
    let skip = |bucket: &str, key: &str| {
        tracing::info!(bucket = ?bucket, key = ?key, "already processed (redelivery); skipping");
        state.metrics.add(Counter::ObjectsSkipped, 1);
    };
    if let Some(etag) = &obj.etag {
        let id = (
            bucket.clone(),
            key.clone(),
            etag.trim_matches('"').to_owned(),
        );
        let (back, done) = ask(st, move |s| s.object_done(&id)).await?;
        st = back;
        if done.map_err(|e| ObjectError::State(e.to_string()))? {
            skip(&bucket, &key);
            return Ok(());
        }
    }
    let owner = source.admission.expected_owner();
    let (body, etag) = match input::s3::open(&state.s3, &bucket, &key, owner).await {
        Ok(x) => x,
        Err(e) if e.not_found && obj.alt_key.is_some() => {
            key = obj.alt_key.clone().expect("checked");
            input::s3::open(&state.s3, &bucket, &key, owner).await?
        }
        Err(e) => return Err(e.into()),
    };
    let id: ObjectId = (bucket.clone(), key.clone(), etag.unwrap_or_default());
    let (back, done) = {
        let id = id.clone();
        ask(st, move |s| s.object_done(&id)).await?
    };
    st = back;
    if done.map_err(|e| ObjectError::State(e.to_string()))? {
        skip(&bucket, &key);
        return Ok(());
    }

    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Arc<Alert>>(ALERT_CHANNEL);
    let reader = Cancellable {
        inner: tokio_util::io::SyncIoBridge::new(body.into_async_read()),
        cancel: cancel.clone(),
    };
    let limits = state.limits;
    let (id2, r2) = (id.clone(), rules.clone());
    let reading = tokio::task::spawn_blocking(move || {
        let mut st = st;
        let read = evaluate::file(reader, limits, &r2, &mut *st, &id2, &tx);
        (st, read)
    });
    let delivering = deliver(rx, state, &cancel);
    let (read_result, delivered) = tokio::join!(reading, delivering);

    let (st, read) = read_result.map_err(|e| ObjectError::Task {
        bucket: bucket.clone(),
        key: key.clone(),
        message: e.to_string(),
    })?;
    if let Err(error) = delivered {
        return Err(ObjectError::Deliver { bucket, key, error });
    }
    let counts = read.counts;
    state
        .metrics
        .add(Counter::RecordErrors, counts.record_errors);
    state.metrics.add(Counter::AlertsRepeated, counts.repeated);
    for (rule, n) in &counts.matches {
        state
            .metrics
            .add_dim(Counter::RuleMatches, "RuleId", rule, *n);
    }
    let stats = read.result.map_err(|error| ObjectError::Read {
        bucket: bucket.clone(),
        key: key.clone(),
        error,
    })?;
    read.state.map_err(|e| ObjectError::State(e.to_string()))?;
    if stats.records > 0 && stats.record_errors == stats.records {
        return Err(ObjectError::NoValidRecords {
            bucket,
            key,
            records: stats.records,
        });
    }
    // Only now, with every alert delivered, is the object done with.
    let (_, completed) = ask(st, move |s| s.object_completed(id)).await?;
    completed.map_err(|e| ObjectError::State(e.to_string()))?;
    state.metrics.add(Counter::FilesProcessed, 1);
    state.metrics.add(
        Counter::EventsProcessed,
        stats.records - stats.record_errors,
    );
    state.metrics.add_lag(&counts.lag);
    tracing::info!(bucket = ?bucket, key = ?key, records = stats.records, record_errors = stats.record_errors,
        alerts = counts.alerts, "file processed");
    Ok(())
}

/// The async half: batches of alerts to every sink, in order.
///
/// A sink that stays down past its `max_attempts` is an outage, not a bad file: the
/// delivery is retried (the message stays invisible through the heartbeat, and
/// files waiting on the sink hold their permits, so intake pauses) until it
/// succeeds or the worker stops. Releasing the message instead would spend one of
/// its receives per attempt round and send good files to the dead-letter queue
/// during a long outage.
async fn deliver(
    mut rx: mpsc::Receiver<Arc<Alert>>,
    state: &State,
    cancel: &AtomicBool,
) -> Result<(), SinkError> {
    let metrics = &state.metrics;
    let mut batch = Vec::with_capacity(DELIVERY_BATCH);
    loop {
        if rx.recv_many(&mut batch, DELIVERY_BATCH).await == 0 {
            return Ok(());
        }
        for sink in &state.sinks {
            let mut round = 0;
            while let Err(e) = sink.deliver(&batch).await {
                if state.stopping.load(Ordering::SeqCst) {
                    SinkDeliveryFailed {
                        sink: &sink.name,
                        error: &e,
                        retry: None,
                    }
                    .emit(metrics);
                    // Stop reading the file: its message is released for another
                    // worker (or this one after a restart).
                    cancel.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                round += 1;
                let wait = crate::retry::backoff(round + 1);
                SinkDeliveryFailed {
                    sink: &sink.name,
                    error: &e,
                    retry: Some((round, wait)),
                }
                .emit(metrics);
                tokio::time::sleep(wait).await;
            }
        }
        for a in &batch {
            if a.deleted_keys.is_some() {
                metrics.add(Counter::JoinFollowUps, 1);
                continue;
            }
            metrics.add_dim(Counter::Alerts, "RuleId", &a.rule_id, 1);
            metrics.add_dim(Counter::Alerts, "Severity", a.severity.as_str(), 1);
            metrics.add(Counter::Alerts, 1);
        }
        batch.clear();
    }
}

/// A reader that fails once `cancel` is set, so a file whose alerts cannot be
/// delivered stops being read.
struct Cancellable<R> {
    inner: R,
    cancel: Arc<AtomicBool>,
}

impl<R: Read> Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(io::Error::other("cancelled: alert delivery failed"));
        }
        self.inner.read(buf)
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    crate::record::now_ms() as u64
}

/// Keeps a message invisible while its files are processed: renews the visibility
/// timeout every third of it.
async fn heartbeat(state: Arc<State>, source: Arc<Source>, receipt: String) {
    loop {
        tokio::time::sleep(source.heartbeat_every).await;
        set_visibility(&state, &source, &receipt, source.visibility_timeout).await;
    }
}

pub(super) async fn set_visibility(state: &State, source: &Source, receipt: &str, to: Duration) {
    if let Err(error) = source.queue.change_visibility(receipt, to).await {
        VisibilityChangeFailed { error: &error }.emit(&state.metrics);
    }
}

async fn delete(state: &State, source: &Source, id: &str, receipt: &str) {
    for attempt in 1..=3 {
        match source.queue.delete(receipt).await {
            Ok(()) => {
                state.metrics.add(Counter::MessagesDeleted, 1);
                return;
            }
            Err(error) => {
                DeleteFailed {
                    message_id: id,
                    attempt,
                    error: &error,
                }
                .emit(&state.metrics);
                tokio::time::sleep(crate::retry::backoff(attempt)).await;
            }
        }
    }
    tracing::error!(message_id = %id, "could not delete the message; it will be redelivered and skipped as already processed");
}
