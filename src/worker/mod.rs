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

pub mod admission;
mod evaluate;
pub mod notification;
mod process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use regex::Regex;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::health::Health;
use crate::input::Limits;
use crate::metrics::{Counter, Metrics};
use crate::rules::{RuleSet, Strictness};
use crate::sinks::{self, Sink};
use crate::state::Completed;

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

/// State shared by the intake loop and every message task.
pub(crate) struct State {
    cfg: Config,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    /// The active rules; a reload swaps the `Arc`, files in flight finish with the
    /// rules they started with.
    engine: RwLock<Arc<evaluate::ActiveRules>>,
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    completed: Arc<Mutex<Completed>>,
    limits: Limits,
    /// `DeleteObjects` alerts and access log lines waiting for each other.
    pending: Arc<Mutex<crate::join::DeleteJoin>>,
    /// Receipt handles of messages being processed, by message id, with their queue,
    /// so that messages still unfinished when the grace period ends can be released.
    inflight: Mutex<HashMap<String, (String, String)>>,
    /// Set when shutdown begins: deliveries stop retrying a failing sink.
    stopping: std::sync::atomic::AtomicBool,
    /// The built-in rule for rejected notifications (see [`admission`]), apart from
    /// the rules directory: it cannot be disabled or reloaded away.
    forged: Mutex<Engine>,
}

/// One queue and its key filters.
pub(crate) struct Source {
    cfg: crate::config::SourceConfig,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// The buckets, key prefix and owner whose objects it reads.
    admission: admission::Admission,
}

impl Source {
    fn wanted(&self, key: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(key)))
            && !self.exclude.iter().any(|r| r.is_match(key))
    }
}

impl State {
    fn reload(&self) {
        match RuleSet::load(&self.cfg.rules.dir, Strictness::Check) {
            Ok(set) => {
                let n = set.enabled().count();
                *self.engine.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(evaluate::ActiveRules::new(&set));
                tracing::info!(rules = n, dir = %self.cfg.rules.dir.display(), "rules reloaded");
            }
            Err(d) => {
                self.metrics.add(Counter::ReloadFailures, 1);
                tracing::error!(dir = %self.cfg.rules.dir.display(), problems = %d, "rule reload rejected; the previous rules stay active");
            }
        }
    }
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
    let compile = |list: &[String]| -> anyhow::Result<Vec<Regex>> {
        list.iter()
            .map(|r| Regex::new(r).with_context(|| format!("invalid key filter `{r}`")))
            .collect()
    };
    let sinks = sinks::build(&cfg.sinks, &aws)?;
    let sources: Vec<Arc<Source>> = cfg
        .sources
        .iter()
        .map(|c| {
            let admission = admission::Admission::new(c);
            if admission.is_open() {
                tracing::warn!(queue = %c.queue_url,
                    "no [source] buckets: this worker reads any object a message names that its role can read; list the trail's buckets in `buckets` (TRAILWATCH_BUCKETS)");
            }
            Ok(Arc::new(Source {
                include: compile(&c.include)?,
                exclude: compile(&c.exclude)?,
                admission,
                cfg: c.clone(),
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let completed_cap = cfg
        .sources
        .iter()
        .map(|s| s.completed_cache)
        .max()
        .unwrap_or(0);
    let state = Arc::new(State {
        pending: Arc::new(Mutex::new(crate::join::DeleteJoin::new(
            crate::join::Policy::Streaming {
                window: cfg.join.window,
                max_entries: cfg.join.max_pending,
                active: cfg.join.enabled,
            },
        ))),
        sqs: aws_sdk_sqs::Client::new(&aws),
        s3: crate::aws::s3_client(&aws),
        engine: RwLock::new(Arc::new(evaluate::ActiveRules::new(&rules))),
        sinks,
        metrics: handles.metrics.clone(),
        health: handles.health.clone(),
        completed: Arc::new(Mutex::new(Completed::new(completed_cap))),
        limits: Limits {
            max_decompressed_bytes: cfg.limits.max_decompressed_bytes,
            max_record_bytes: cfg.limits.max_record_bytes,
            max_nesting_depth: cfg.limits.max_nesting_depth,
        },
        inflight: Mutex::new(HashMap::new()),
        stopping: std::sync::atomic::AtomicBool::new(false),
        forged: Mutex::new(Engine::new(
            &RuleSet {
                rules: vec![admission::forged_rule()],
                warnings: Vec::new(),
            },
            EngineOptions::default(),
        )),
        cfg,
    });
    state.health.set_rules_loaded(true);

    // Background parts stop when `stop` turns true, after the intake has drained.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    if !state.cfg.health.listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&state.cfg.health.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for health checks",
                    state.cfg.health.listen
                )
            })?;
        tracing::info!(address = %listener.local_addr()?, "health endpoints on /healthz, /readyz, /metrics");
        let (h, m, s) = (state.health.clone(), state.metrics.clone(), stop_rx.clone());
        background.spawn(async move {
            if let Err(e) = crate::health::serve(listener, h, m, s).await {
                tracing::error!(error = %e, "health server failed");
            }
        });
    }
    if state.cfg.metrics.enabled {
        let publisher = crate::metrics::cloudwatch::Publisher {
            client: aws_sdk_cloudwatch::Client::new(&aws),
            namespace: state.cfg.metrics.namespace.clone(),
            interval: state.cfg.metrics.flush_interval,
            max_pending_flushes: state.cfg.metrics.max_pending_flushes,
            metrics: state.metrics.clone(),
        };
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

    for src in &sources {
        tracing::info!(queue = %src.cfg.queue_url, in_flight = src.cfg.max_in_flight, "polling");
    }
    tracing::info!(rules = rules.enabled().count(), "worker started");
    let mut intakes = JoinSet::new();
    for src in sources {
        intakes.spawn(intake(
            state.clone(),
            src,
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
    let waiting = state
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    if waiting > 0 {
        tracing::info!(
            entries = waiting,
            "DeleteObjects alerts and access log lines still waiting for each other are dropped (their alerts went out already)"
        );
    }
    tracing::info!(
        files = state.metrics.total(Counter::FilesProcessed),
        events = state.metrics.total(Counter::EventsProcessed),
        "worker stopped"
    );
    result
}

/// Sends out `DeleteObjects` alerts whose access log lines never came.
async fn sweep_join(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let every = (state.cfg.join.window / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut stop) => return,
        }
        let (expired, evicted) = {
            let mut p = state.pending.lock().unwrap_or_else(|e| e.into_inner());
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
                state.metrics.add(Counter::SinkErrors, 1);
                tracing::error!(error = %e, alerts = batch.len(), "could not deliver expired DeleteObjects alerts");
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
    let src = &source.cfg;
    let permits = Arc::new(Semaphore::new(src.max_in_flight));
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
            (Some(limit), Some(since)) => src.wait_time.min(limit.saturating_sub(since.elapsed())),
            (Some(limit), None) => src.wait_time.min(limit),
            _ => src.wait_time,
        };
        let receive = state
            .sqs
            .receive_message()
            .queue_url(&src.queue_url)
            .max_number_of_messages(free.min(10) as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(src.visibility_timeout.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            // Who sent it and when: a rejected message's alert names its sender.
            .message_system_attribute_names(MessageSystemAttributeName::SenderId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send();
        tokio::pin!(receive);
        let received = tokio::select! {
            r = &mut receive => r,
            _ = stopped(&mut shutdown) => {
                // A poll cut short may already have been answered: give the answer a
                // moment to arrive and release what it holds, so that nothing waits
                // for its visibility timeout. A poll abandoned later than that is
                // still safe (its messages come back after the timeout).
                if let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(1), &mut receive).await {
                    for m in out.messages.unwrap_or_default() {
                        if let Some(r) = m.receipt_handle {
                            process::set_visibility(&state, &source, &r, Duration::ZERO).await;
                        }
                    }
                }
                break;
            }
        };
        let messages = match received {
            Ok(out) => {
                failures = 0;
                state.health.poll_ok();
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                failures += 1;
                let text = crate::aws::error_text(&e);
                state.metrics.add(Counter::SqsErrors, 1);
                state.health.poll_failed(text.clone());
                let pause = crate::sinks::backoff(failures).max(Duration::from_secs(1));
                tracing::warn!(error = %text, retry_in = ?pause, "ReceiveMessage failed");
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
        tracing::info!(in_flight = tasks.len(), grace = ?src.shutdown_grace, "stopping: finishing in-flight files");
    }
    let drained = tokio::time::timeout(src.shutdown_grace, async {
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
                .filter(|(_, (q, _))| *q == src.queue_url)
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
