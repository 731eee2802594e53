//! What the worker's tasks share, resolved from the configuration once by
//! [`State::build`]: clients, sinks, each source with its compiled key filters
//! and its admission, and the settings the background parts need. After it the
//! worker reads these fields, not the configuration.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::Handles;
use super::admission::{self, Admission};
use super::evaluate;
use super::sqs::Queue;
use crate::config::{Config, KeyFilter, StateBackend};
use crate::engine::{Engine, EngineOptions};
use crate::health::Health;
use crate::input::Limits;
use crate::metrics::Metrics;
use crate::metrics::cloudwatch::Publisher;
use crate::metrics::events::{InternalEvent, ReloadRejected, RulesReloaded};
use crate::rules::{RuleSet, Strictness};
use crate::sinks::{self, Sink};
use crate::state::Completed;

/// State shared by the intake loops and every message task.
pub(crate) struct State {
    pub(super) s3: aws_sdk_s3::Client,
    /// The active rules; a reload swaps the `Arc`, files in flight finish with the
    /// rules they started with.
    pub(super) engine: RwLock<Arc<evaluate::ActiveRules>>,
    pub(super) sinks: Vec<Sink>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<Health>,
    /// Detection state: windows, the DeleteObjects join, completed objects.
    pub(super) detection: crate::state::Backend,
    pub(super) limits: Limits,
    /// `DeleteObjects` alerts and access log lines waiting for each other.
    /// Receipt handles of messages being processed, by message id, with their queue,
    /// so that messages still unfinished when the grace period ends can be released.
    pub(super) inflight: Mutex<HashMap<String, (String, String)>>,
    /// When the last message this worker released for a retry is due back on its
    /// queue: `--until-idle` does not call the queue idle before then.
    pub(super) retry_due: Mutex<Option<std::time::Instant>>,
    /// Set when shutdown begins: deliveries stop retrying a failing sink.
    pub(super) stopping: Arc<AtomicBool>,
    /// The built-in rule for rejected notifications (see [`admission`]), apart from
    /// the rules directory: it cannot be disabled or reloaded away.
    pub(super) forged: Mutex<Engine>,
    /// Where SIGHUP reloads the rules from.
    pub(super) rules_dir: PathBuf,
    /// The queues, each read by its own intake loop.
    pub(super) sources: Vec<Arc<Source>>,
    /// How often `DeleteObjects` alerts whose access log lines never came are sent.
    pub(super) join_sweep: Duration,
    /// Where the health endpoints listen; `None`: not served.
    pub(super) health_listen: Option<String>,
    /// The CloudWatch publisher; `None`: metrics are not sent.
    pub(super) publisher: Option<Publisher>,
}

/// One queue, its key filters and its allow-list.
pub(crate) struct Source {
    pub(super) queue: Queue,
    pub(super) max_in_flight: usize,
    pub(super) wait_time: Duration,
    pub(super) visibility_timeout: Duration,
    /// How often the heartbeat renews a message's visibility: a third of it.
    pub(super) heartbeat_every: Duration,
    pub(super) retry_delay: Duration,
    pub(super) shutdown_grace: Duration,
    keys: KeyFilter,
    /// The buckets, key prefix and owner whose objects it reads.
    pub(super) admission: Admission,
}

impl Source {
    pub(super) fn wanted(&self, key: &str) -> bool {
        self.keys.wanted(key)
    }
}

impl State {
    /// Resolves `cfg` (validated by [`Config::load`], whose compiled key filters
    /// it takes) into the shared state, with `rules` active.
    pub(super) fn build(
        cfg: Config,
        rules: &RuleSet,
        aws: &aws_config::SdkConfig,
        handles: Handles,
    ) -> anyhow::Result<State> {
        let sinks = sinks::build(&cfg.sinks, aws)?;
        let sqs = aws_sdk_sqs::Client::new(aws);
        let sources = cfg
            .sources
            .iter()
            .map(|c| {
                let vt = c.visibility_timeout;
                Ok(Arc::new(Source {
                    queue: Queue::new(sqs.clone(), c.queue_url.clone()),
                    max_in_flight: c.max_in_flight,
                    wait_time: c.wait_time,
                    visibility_timeout: vt,
                    heartbeat_every: (vt / 3).max(Duration::from_secs(1)),
                    retry_delay: c.retry_delay,
                    shutdown_grace: c.shutdown_grace,
                    keys: c.key_filter()?,
                    admission: Admission::new(c),
                }))
            })
            .collect::<anyhow::Result<_>>()?;
        let completed_cap = cfg
            .sources
            .iter()
            .map(|s| s.completed_cache)
            .max()
            .unwrap_or(0);
        let publisher = cfg.metrics.enabled.then(|| Publisher {
            client: aws_sdk_cloudwatch::Client::new(aws),
            namespace: cfg.metrics.namespace.clone(),
            interval: cfg.metrics.flush_interval,
            max_pending_flushes: cfg.metrics.max_pending_flushes,
            metrics: handles.metrics.clone(),
        });
        let j = &cfg.join;
        Ok(State {
            detection: match cfg.state.backend {
                StateBackend::Memory => {
                    crate::state::Backend::Memory(Arc::new(crate::state::Shared {
                        retention: cfg.state.retention,
                        ..crate::state::Shared::new(
                            crate::join::DeleteJoin::new(crate::join::Policy::Streaming {
                                window: j.window,
                                max_entries: j.max_pending,
                                active: j.enabled,
                            }),
                            Completed::new(completed_cap),
                        )
                    }))
                }
                StateBackend::Dynamodb => {
                    crate::state::Backend::DynamoDb(crate::state::dynamodb::Table::new(
                        aws_sdk_dynamodb::Client::new(aws),
                        &cfg.state.table,
                        cfg.state.retention,
                    ))
                }
            },
            s3: crate::aws::s3_client(aws),
            engine: RwLock::new(Arc::new(evaluate::ActiveRules::new(rules))),
            sinks,
            metrics: handles.metrics,
            health: handles.health,
            limits: Limits {
                max_decompressed_bytes: cfg.limits.max_decompressed_bytes,
                max_record_bytes: cfg.limits.max_record_bytes,
                max_nesting_depth: cfg.limits.max_nesting_depth,
            },
            inflight: Mutex::new(HashMap::new()),
            retry_due: Mutex::new(None),
            stopping: Arc::new(AtomicBool::new(false)),
            forged: Mutex::new(Engine::new(
                &RuleSet {
                    rules: vec![admission::forged_rule()],
                    warnings: Vec::new(),
                },
                EngineOptions::default(),
            )),
            join_sweep: (j.window / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
            rules_dir: cfg.rules.dir,
            sources,
            health_listen: Some(cfg.health.listen).filter(|l| !l.is_empty()),
            publisher,
        })
    }

    /// Loads the rules directory again and makes it active; on problems, the
    /// rules in force stay.
    pub(super) fn reload(&self) {
        match RuleSet::load(&self.rules_dir, Strictness::Check) {
            Ok(set) => {
                let n = set.enabled().count();
                *self.engine.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(evaluate::ActiveRules::new(&set));
                RulesReloaded {
                    rules: n,
                    dir: &self.rules_dir,
                }
                .emit(&self.metrics);
            }
            Err(d) => ReloadRejected {
                dir: &self.rules_dir,
                problems: &d,
            }
            .emit(&self.metrics),
        }
    }
}
