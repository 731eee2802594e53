//! trailwatch: a CloudTrail detector that watches instead of querying.
//!
//! # Layout
//! The modules follow the data flow, one stage each, and import one way (a stage
//! uses those before it, never those after):
//!
//! notification ([`worker::notification`], admitted by [`worker::admission`]) →
//! object ([`input::s3`], [`input::decode`]) → records ([`input::records`],
//! [`input::access_log`]) → normalised event ([`record`], [`identity`]) → rules
//! ([`rules`], matched by [`engine`]) → the per-file evaluator ([`evaluate`]: a pure
//! half run in parallel, then one stateful step) → state ([`state`]: the windows of
//! [`engine::windows`], the DeleteObjects [`join`], completed objects; in memory or
//! DynamoDB) → alert ([`alert`]) → sinks ([`sinks`]), and only then the SQS delete.
//! `scan` drives the same evaluator from files or an S3 prefix to [`output`].
//!
//! - [`json`]: low-level JSON the layers share (byte scanning, the splitter's
//!   grammar check, walking an object's members, the writer); a leaf.
//! - [`input`]: where log files come from (paths, stdin, S3), gzip decoding with a
//!   size cap, and streaming a file into raw records with every limit held while
//!   reading.
//! - [`record`] and [`identity`]: a record as rules see it, with the normalised
//!   `actor.*`, `s3.*` and `event.*` fields.
//! - [`rules`]: the TOML rule language: the rule types, loading files with spans,
//!   compiling matchers, conditions, thresholds and inline tests, diagnostics.
//! - [`engine`]: matching through the rule index and observations (pure), and the
//!   event-time windows of thresholds and suppression ([`engine::windows`]), settled
//!   per file against a store.
//! - [`evaluate`]: the one per-file evaluator of `scan` and the worker:
//!   [`evaluate::prepare`] (pure) and [`evaluate::FileTurn`] (the stateful step).
//! - [`state`]: detection state behind one trait: [`state::Memory`] (scan),
//!   [`state::Shared`] (one worker), [`state::dynamodb`] (a fleet).
//! - [`join`]: `DeleteObjects` alerts paired with S3 server access log lines, with a
//!   batch and a streaming policy.
//! - [`alert`]: what a detection becomes, with a deterministic id.
//! - [`output`]: JSON lines and CSV; [`sinks`]: stdout, file, SNS, webhooks.
//! - [`testing`]: running rules' inline tests on the engine, and the conformance
//!   report of ported rules (`trailwatch rules test`).
//! - [`scan`]: the offline driver behind `trailwatch scan` (objects, the ordered
//!   consumer, read-ahead threads).
//! - [`worker`]: the SQS driver behind `trailwatch run` (intake, admission, each
//!   file's evaluation on its own thread, delivery, the delete; its state resolved
//!   from the configuration once, its SQS calls); [`config`] its configuration (the
//!   file, the `TRAILWATCH_*` environment, sources with compiled key filters, typed
//!   sinks, `[state]`).
//! - [`enqueue`]: backfills on the fleet (`trailwatch enqueue`): an S3 prefix,
//!   pruned to the days of a range, sent to the workers' queue as S3 notifications.
//! - [`metrics`] (CloudWatch and `/metrics`; [`metrics::events`], notable events
//!   that log and count in one call), [`health`] (`/healthz`, `/readyz`),
//!   [`shutdown`] (stopping) and [`retry`] (backoff), shared by the long-running
//!   parts; [`aws`] (the SDK edge).
//! - [`cli`]: the command line; [`logging`]: stderr logs, escaped.

pub mod alert;
pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod enqueue;
pub mod evaluate;
pub mod health;
pub mod identity;
pub mod input;
pub mod join;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod record;
pub mod retry;
pub mod rules;
pub mod scan;
pub mod shutdown;
pub mod sinks;
pub mod state;
pub mod testing;
pub mod worker;
