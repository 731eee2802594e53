//! trailwatch: a CloudTrail detector that watches instead of querying.
//!
//! # Layout
//! The modules follow the data flow, one stage each. The worker's path:
//!
//! notification ([`worker::notification`], admitted by [`worker::admission`]) →
//! object ([`input::s3`], [`input::decode`]) → records ([`input::records`],
//! [`input::access_log`]) → normalised event ([`record`], [`identity`]) → rules
//! ([`rules`], matched by [`engine`]) → state (the engine's windows,
//! [`engine::windows`]; the DeleteObjects [`join`]) → alert ([`alert`]) → sinks
//! ([`sinks`]), and only then the SQS delete. `scan` takes the same path from files
//! or an S3 prefix to [`output`].
//!
//! - [`input`]: where log files come from (paths, stdin, S3), gzip decoding with a
//!   size cap, and streaming a file into raw records with every limit held while
//!   reading.
//! - [`record`] and [`identity`]: a record as rules see it, with the normalised
//!   `actor.*`, `s3.*` and `event.*` fields.
//! - [`rules`]: the TOML rule language — the rule types, loading files with spans,
//!   compiling matchers, conditions, thresholds and inline tests, diagnostics.
//! - [`engine`]: evaluates events against rules: a pure half (matching through the
//!   rule index, observations) and the windowed state of thresholds and
//!   suppression.
//! - [`testing`]: running rules' inline tests on the engine, and the conformance
//!   report of ported rules (`trailwatch rules test`).
//! - [`join`]: `DeleteObjects` alerts paired with S3 server access log lines.
//! - [`alert`]: what a detection becomes, with a deterministic id.
//! - [`output`]: JSON lines and CSV; [`sinks`]: stdout, file, SNS, webhooks.
//! - [`scan`]: the offline driver behind `trailwatch scan`.
//! - [`enqueue`]: backfills on the fleet (`trailwatch enqueue`): an S3 prefix,
//!   pruned to the days of a range, sent to the workers' queue as S3 notifications.
//! - [`worker`]: the SQS driver behind `trailwatch run` (intake, admission, the
//!   per-file evaluation, delivery, the delete; its shared state resolved from the
//!   configuration once, and its SQS calls); [`config`] its configuration (the
//!   file, the `TRAILWATCH_*` environment, sources with their compiled key
//!   filters, typed sinks).
//! - [`events`]: the worker's notable events, each logging and counting in one call.
//! - [`metrics`] (CloudWatch and `/metrics`), [`health`] (`/healthz`, `/readyz`),
//!   [`shutdown`] (stopping) and [`retry`] (backoff), shared by the long-running
//!   parts; [`aws`] (the SDK edge).
//! - [`cli`]: the command line; [`logging`]: stderr logs, escaped.
//! - [`json`]: low-level JSON the layers share (byte scanning, the splitter's grammar
//!   check, walking an object's members, the writer), a leaf importing nothing else.

pub mod alert;
pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod enqueue;
pub mod evaluate;
pub mod events;
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
