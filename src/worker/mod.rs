//! `trailwatch run`: the long-running worker.
//!
//! Data flow: SQS message → [`notification`] (which objects) → [`admission`] (may
//! this source read them) → S3 GetObject, streamed → records → engine (each file on
//! its own thread, see `evaluate.rs`) → alerts → every sink → only then
//! DeleteMessage. A message is
//! left alone on any failure (SQS redelivers it, and the queue's redrive policy moves
//! it to the dead-letter queue after maxReceiveCount); while its files are processed
//! a heartbeat keeps it invisible to other consumers.
//!
//! Shutdown is a parameter ([`Signals`]), as are rule reloads, so tests drive both.
//!
//! `state.rs` resolves the configuration once into what the tasks share
//! (`State::build`); `sqs.rs` holds the SQS calls; `process.rs` one message.

pub mod admission;
mod evaluate;
pub mod notification;
mod process;
mod sqs;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::events::{ExpiredAlertsUndelivered, InternalEvent, ReceiveFailed};
use crate::metrics::{Counter, Metrics};
use crate::rules::RuleSet;
use state::{Source, State};

/// What the process tells the worker.
pub struct Signals {
    /// Turns true to stop: no new receives, in-flight files finish within the grace.
    pub shutdown: watch::Receiver<bool>,
    /// One message per reload request (SIGHUP).
    pub reload: mpsc::Receiver<()>,
}

pub use crate::shutdown::stopped;

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Exit once the queue has been empty (and nothing in flight) for this long.
    pub until_idle: Option<Duration>,
}

/// Handles for tests and the health endpoint.
pub struct Handles {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// Runs the worker until `signals.shutdown` turns true (or the queue stays idle for
/// `until_idle`). Returns after in-flight files finished or the grace period ended,
/// sinks were flushed and metrics sent.
pub async fn run(
    cfg: Config,
    rules: RuleSet,
    aws: aws_config::SdkConfig,
    signals: Signals,
    opts: RunOptions,
) -> anyhow::Result<()> {
    let handles = Handles {
        metrics: Arc::new(Metrics::default()),
        health: Arc::new(Health::default()),
    };
    run_with(cfg, rules, aws, signals, opts, handles).await
}

/// [`run`] with caller-provided metrics and health state.
pub async fn run_with(
    cfg: Config,
    rules: RuleSet,
    aws: aws_config::SdkConfig,
    signals: Signals,
    opts: RunOptions,
    handles: Handles,
) -> anyhow::Result<()> {
    let state = Arc::new(State::build(cfg, &rules, &aws, handles)?);
    for src in &state.sources {
        if src.admission.is_open() {
            tracing::warn!(queue = %src.queue.url(),
                "no [source] buckets: this worker reads any object a message names that its role can read; list the trail's buckets in `buckets` (TRAILWATCH_BUCKETS)");
        }
    }
    state.health.set_rules_loaded(true);

    // Background parts stop when `stop` turns true, after the intake has drained.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    if let Some(listen) = &state.health_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} for health checks"))?;
        tracing::info!(address = %listener.local_addr()?, "health endpoints on /healthz, /readyz, /metrics");
        let (h, m, s) = (state.health.clone(), state.metrics.clone(), stop_rx.clone());
        background.spawn(async move {
            if let Err(e) = crate::health::serve(listener, h, m, s).await {
                tracing::error!(error = %e, "health server failed");
            }
        });
    }
    if let Some(publisher) = state.publisher.clone() {
        background.spawn(publisher.run(stop_rx.clone()));
    }
    {
        let state = state.clone();
        let mut reload = signals.reload;
        let mut stop = stop_rx.clone();
        background.spawn(async move {
            loop {
                tokio::select! {
                    r = reload.recv() => {
                        if r.is_none() {
                            break;
                        }
                        let s = state.clone();
                        // Loading reads files and compiles regexes: keep it off the runtime.
                        let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                    }
                    _ = stopped(&mut stop) => break,
                }
            }
        });
    }
    background.spawn(sweep_join(state.clone(), stop_rx.clone()));

    for src in &state.sources {
        tracing::info!(queue = %src.queue.url(), in_flight = src.max_in_flight, "polling");
    }
    tracing::info!(rules = rules.enabled().count(), "worker started");
    let mut intakes = JoinSet::new();
    for src in &state.sources {
        intakes.spawn(intake(
            state.clone(),
            src.clone(),
            signals.shutdown.clone(),
            opts.clone(),
        ));
    }
    let mut result = Ok(());
    while let Some(r) = intakes.join_next().await {
        match r {
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(anyhow::anyhow!("intake task failed: {e}")),
            Ok(Ok(())) => {}
        }
    }

    let _ = stop_tx.send(true);
    // The metrics publisher flushes once more; give the background a bounded time.
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while background.join_next().await.is_some() {}
    })
    .await;
    background.abort_all();
    let waiting = state.detection.memory().map_or(0, |m| {
        m.join.lock().unwrap_or_else(|e| e.into_inner()).len()
    });
    if waiting > 0 {
        tracing::info!(
            entries = waiting,
            "DeleteObjects alerts and access log lines still waiting for each other are dropped (their alerts went out already)"
        );
    }
    if let crate::state::Backend::DynamoDb(t) = &state.detection {
        let u = t.usage();
        tracing::info!(
            reads = u.reads,
            writes = u.writes,
            read_units = u.read_units,
            write_units = u.write_units,
            "DynamoDB state usage"
        );
    }
    tracing::info!(
        files = state.metrics.total(Counter::FilesProcessed),
        events = state.metrics.total(Counter::EventsProcessed),
        "worker stopped"
    );
    result
}

/// Sends out `DeleteObjects` alerts whose access log lines never came, and
/// sweeps old windows from memory.
async fn sweep_join(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.join_sweep) => {}
            _ = stopped(&mut stop) => return,
        }
        let Some(memory) = state.detection.memory() else {
            return;
        };
        // Windows untouched for as long as CloudTrail may still deliver late
        // files of theirs are forgotten, so that memory stays bounded.
        memory.sweep(process::now_ms() as i64);
        let (expired, evicted) = {
            let mut p = memory.join.lock().unwrap_or_else(|e| e.into_inner());
            (p.expire(process::now_ms()), p.take_evicted())
        };
        state.metrics.add(Counter::JoinEvicted, evicted);
        if expired.is_empty() {
            continue;
        }
        state
            .metrics
            .add(Counter::JoinExpired, expired.len() as u64);
        let batch: Vec<Arc<crate::alert::Alert>> = expired.into_iter().map(Arc::new).collect();
        for sink in &state.sinks {
            if let Err(e) = sink.deliver(&batch).await {
                ExpiredAlertsUndelivered {
                    error: &e,
                    alerts: batch.len(),
                }
                .emit(&state.metrics);
            }
        }
    }
}

/// The receive loop, then the drain.
async fn intake(
    state: Arc<State>,
    source: Arc<Source>,
    mut shutdown: watch::Receiver<bool>,
    opts: RunOptions,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(source.max_in_flight));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut failures: u32 = 0;
    let mut idle_since: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        while let Some(r) = tasks.try_join_next() {
            if let Err(e) = r {
                tracing::error!(error = %e, "a message task failed unexpectedly; its message will be redelivered");
            }
        }
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = stopped(&mut shutdown) => {}
            }
            continue;
        }
        // With --until-idle, never poll longer than the idle time left.
        let wait = match (opts.until_idle, idle_since) {
            (Some(limit), Some(since)) => {
                source.wait_time.min(limit.saturating_sub(since.elapsed()))
            }
            (Some(limit), None) => source.wait_time.min(limit),
            _ => source.wait_time,
        };
        let receive = source.queue.receive(free, wait, source.visibility_timeout);
        tokio::pin!(receive);
        let received = tokio::select! {
            r = &mut receive => r,
            _ = stopped(&mut shutdown) => {
                // A poll cut short may already have been answered: give the answer a
                // moment to arrive and release what it holds, so that nothing waits
                // for its visibility timeout. A poll abandoned later than that is
                // still safe (its messages come back after the timeout).
                if let Ok(Ok(messages)) = tokio::time::timeout(Duration::from_secs(1), &mut receive).await {
                    for m in messages {
                        if let Some(r) = m.receipt_handle {
                            process::set_visibility(&state, &source, &r, Duration::ZERO).await;
                        }
                    }
                }
                break;
            }
        };
        let messages = match received {
            Ok(messages) => {
                failures = 0;
                state.health.poll_ok();
                messages
            }
            Err(text) => {
                failures += 1;
                state.health.poll_failed(text.clone());
                let pause = crate::retry::backoff(failures).max(Duration::from_secs(1));
                ReceiveFailed {
                    error: &text,
                    retry_in: pause,
                }
                .emit(&state.metrics);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopped(&mut shutdown) => break,
                }
                continue;
            }
        };
        if messages.is_empty() {
            // Reap tasks that finished during the poll before judging idleness.
            while let Some(r) = tasks.try_join_next() {
                if let Err(e) = r {
                    tracing::error!(error = %e, "a message task failed unexpectedly; its message will be redelivered");
                }
            }
            // A message released for a retry is not gone: the queue is not idle
            // before it is due back (it is then received, or it went to the
            // dead-letter queue).
            let due = *state.retry_due.lock().unwrap_or_else(|e| e.into_inner());
            if due.is_some_and(|d| Instant::now() < d) {
                idle_since = None;
                continue;
            }
            if tasks.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if let Some(limit) = opts.until_idle
                    && since.elapsed() >= limit
                {
                    tracing::info!(idle = ?limit, "queue idle; exiting (--until-idle)");
                    break;
                }
            }
            continue;
        }
        idle_since = None;
        for m in messages {
            let permit = permits
                .clone()
                .try_acquire_owned()
                .expect("received no more messages than free permits");
            tasks.spawn(process::message(state.clone(), source.clone(), m, permit));
        }
    }

    // Drain: let in-flight files finish within the grace period.
    state
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if !tasks.is_empty() {
        tracing::info!(in_flight = tasks.len(), grace = ?source.shutdown_grace, "stopping: finishing in-flight files");
    }
    let drained = tokio::time::timeout(source.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<String> = {
            let mut inflight = state.inflight.lock().unwrap_or_else(|e| e.into_inner());
            let mine: Vec<String> = inflight
                .iter()
                .filter(|(_, (q, _))| q == source.queue.url())
                .map(|(id, _)| id.clone())
                .collect();
            mine.into_iter()
                .filter_map(|id| inflight.remove(&id))
                .map(|(_, r)| r)
                .collect()
        };
        tracing::warn!(
            messages = left.len(),
            "grace period over; releasing unfinished messages for redelivery"
        );
        for receipt in left {
            process::set_visibility(&state, &source, &receipt, Duration::ZERO).await;
        }
    }
    Ok(())
}
