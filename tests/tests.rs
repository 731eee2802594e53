//! Integration tests: one binary, one module per area.

mod support;

// `trailwatch scan` over local files: formats, readers' error cases, options.
mod scan;
// `trailwatch rules check` / `rules test`: diagnostics and the test runner.
mod rules_cli;
// Real CloudTrail records (vendored field data) and generated corpora.
mod corpus;
// `trailwatch scan s3://...` against the moto emulator.
mod s3_scan;
// Mutated and random inputs against every parser.
mod robustness;
// Nothing lost under injected faults.
mod reliability;
// S3 server access logs and the DeleteObjects join.
mod access_logs;
// `trailwatch run` against the emulator: intake, delivery guarantees, reloads.
mod worker;
// How soon the worker alerts on a new file (a measurement, run by scripts/bench).
mod latency;
// Hostile records, files and senders: every limit holds while reading.
mod hostile;
// Hostile senders: forged notifications are rejected, alerted on and never read.
mod senders;
// The health server under hostile clients.
mod health;
// `trailwatch enqueue`: backfills sent to the workers' queue, pruned by date.
mod enqueue;
// The same alert ids however files are shared out among workers with shared state.
mod partitions;
// A fleet of workers sharing DynamoDB state, against `scan`; the table's set-up.
mod fleet;
