//! trailwatch: a CloudTrail detector that watches instead of querying.
//!
//! # Layout
//! The modules follow the data flow, one stage each:
//!
//! - [`input`]: where log files come from (paths, stdin, S3), gzip decoding with a
//!   size cap, and streaming a file into raw records.
//! - [`record`] and [`identity`]: a record as rules see it, with the normalised
//!   `actor.*`, `s3.*` and `event.*` fields.
//! - [`rules`]: the TOML rule language — loading with spans, compiled matchers,
//!   conditions, thresholds, inline tests.
//! - [`engine`]: evaluates events against rules, with windowed state.
//! - [`alert`]: what a detection becomes, with a deterministic id.
//! - [`output`]: JSON lines and CSV.
//! - [`scan`]: the offline driver behind `trailwatch scan`.
//! - [`cli`]: the command line; [`logging`]: stderr logs, escaped.

pub mod alert;
pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod health;
pub mod identity;
pub mod input;
pub mod join;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod record;
pub mod rules;
pub mod scan;
pub mod shutdown;
pub mod sinks;
pub mod worker;
