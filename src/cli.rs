//! Command-line interface: argument definitions and dispatch to the stages.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::engine::EngineOptions;
use crate::input::{InputSpec, Limits};
use crate::logging::LogFormat;
use crate::output::{self, Format};
use crate::record::parse_time_ms;
use crate::rules::{RuleSet, Severity, Strictness};
use crate::scan::{self, ScanOptions};
use crate::testing;

/// Exit status: success whatever the alerts.
pub const EXIT_OK: u8 = 0;
/// Exit status: `--fail-on` was met, or rule tests failed.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: errors (bad rules, unreadable files or records, bad arguments).
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "trailwatch",
    version,
    about = "Detect who did what in AWS from CloudTrail logs, as they land or after the fact"
)]
pub struct Cli {
    /// Log format on stderr: text for a person, json for a log group.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TRAILWATCH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: long-poll SQS for new log files, evaluate them, deliver alerts.
    Run(RunArgs),
    /// Scan CloudTrail log files (local paths, `-` for stdin, or s3://bucket/prefix) and print alerts.
    Scan(ScanArgs),
    /// Backfill on the fleet: send the workers' queue an S3 notification for every
    /// object under s3://bucket/prefix/, so the running workers evaluate them.
    ///
    /// Each object becomes the `ObjectCreated:Put` notification S3 would have sent
    /// (ten to a SendMessageBatch call; entries SQS reports as failed are retried
    /// with backoff, and the command exits 2 naming how many were not sent). With
    /// --since/--until, the CloudTrail layout
    /// (AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/) is walked folder by
    /// folder and only the days that overlap [since, until) are listed; keys outside
    /// that layout are listed and sent whatever the range. CloudTrail files are filed
    /// under the day they were delivered, minutes after their events: widen --until
    /// by 15 minutes to catch the events of its last minutes. Digest files and folder
    /// markers are skipped.
    ///
    /// The queue policy must let the caller send (with the CloudFormation stack: add
    /// its ARN to the BackfillPrincipalArns parameter); the caller also needs
    /// s3:ListBucket on the bucket and sqs:SendMessage on the queue.
    Enqueue(EnqueueArgs),
    /// Check or test detection rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Probe a worker's health endpoint (container health checks, without a shell or
    /// curl): exit 0 when it answers 2xx, 1 otherwise (the reason on stderr).
    Healthcheck(HealthcheckArgs),
    /// Shared detection state (`[state] backend = "dynamodb"`).
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create the DynamoDB table the workers share (on demand, TTL on
    /// `expires_at`), with the standard AWS credentials and AWS_ENDPOINT_URL. Does
    /// nothing when the table exists.
    CreateTable {
        /// The table's name (the workers' `[state] table`).
        #[arg(long, value_name = "NAME")]
        table: String,
    },
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to GET [default: http://127.0.0.1:8080/healthz, or /healthz on the port
    /// of TRAILWATCH_HEALTH_LISTEN when that is set].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up after this long (connecting and answering).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RulesDir {
    /// Rules directory (or one rule file) [default: $TRAILWATCH_RULES, else ./rules].
    #[arg(long = "rules", env = "TRAILWATCH_RULES", value_name = "DIR")]
    pub rules: Option<PathBuf>,
}

impl RulesDir {
    fn resolve(&self, positional: Option<PathBuf>) -> PathBuf {
        positional
            .or_else(|| self.rules.clone())
            .unwrap_or_else(|| PathBuf::from("rules"))
    }
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate every rule; report every problem as file:line:col and exit 2 on any.
    Check {
        #[command(flatten)]
        dir: RulesDir,
        /// Rules directory, instead of --rules.
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
    },
    /// Run every rule's inline [[test]] cases; exit 1 when any fails.
    Test {
        #[command(flatten)]
        dir: RulesDir,
        /// Rules directory, instead of --rules.
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
        /// Print only failures and the totals.
        #[arg(long, short)]
        quiet: bool,
        /// Print a conformance report of ported rules (by `origin.id`) instead: per
        /// upstream rule, ported or not (from `_not_ported.toml`) and tests passing.
        #[arg(long)]
        report: bool,
        /// With --report: the upstream project's test files (`<RuleID>.json`), so the
        /// totals count every upstream rule and test.
        #[arg(long, value_name = "DIR", requires = "report")]
        upstream: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); every key can also come from TRAILWATCH_* variables.
    #[arg(long, short, value_name = "FILE", env = "TRAILWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration and the rules, print the effective configuration
    /// (secrets masked), and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Exit 0 once the queue has been empty for this long (e.g. "30s"): drain-and-exit runs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub until_idle: Option<std::time::Duration>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}; write e.g. \"30s\", \"5m\""))
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub dir: RulesDir,
    /// Alert output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// CSV columns: `alerts` (one row per alert) or `deleted-keys` (DeleteObjects alerts
    /// joined with S3 server access log lines: one row per deleted key).
    #[arg(long, value_enum, default_value = "alerts")]
    pub columns: output::Columns,
    /// Evaluate match conditions only: one alert per matching event, no thresholds or suppression.
    #[arg(long)]
    pub ignore_thresholds: bool,
    /// Exit 1 when an alert at or above this severity fired.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
    /// Keep only events with eventTime at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    pub since: Option<i64>,
    /// Keep only events with eventTime before this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    pub until: Option<i64>,
    /// Reject a file once it decompresses past this many bytes (gzip bombs).
    #[arg(long, value_name = "BYTES", default_value_t = crate::input::decode::DEFAULT_MAX_DECOMPRESSED)]
    pub max_decompressed_bytes: u64,
    /// Reject (skip) a record larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::input::records::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Reject (skip) a record whose arrays and objects nest deeper than this.
    #[arg(long, value_name = "LEVELS", default_value_t = crate::input::DEFAULT_MAX_NESTING_DEPTH)]
    pub max_nesting_depth: u32,
    /// Threads that read files ahead (a file per thread: inflate, parse, match)
    /// while the main thread applies thresholds and writes alerts in input order,
    /// so the output is the same whatever N; 1 does it all on one thread.
    /// Default: the number of CPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Files, directories, `-` (stdin) or s3://bucket/prefix.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The workers' queue, by URL (as `aws sqs get-queue-url` prints it).
    #[arg(long, value_name = "URL", value_parser = parse_queue_url)]
    pub queue_url: String,
    /// Skip day folders that end before this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    pub since: Option<i64>,
    /// Skip day folders that start at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    pub until: Option<i64>,
    /// The objects to send: s3://bucket/prefix/ (the whole bucket: s3://bucket/).
    #[arg(value_name = "S3_URL")]
    pub location: String,
}

fn parse_queue_url(s: &str) -> Result<String, String> {
    if s.starts_with("https://") || s.starts_with("http://") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a queue URL; give the URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), \
             not the queue's name or ARN"
        ))
    }
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

fn parse_rfc3339(s: &str) -> Result<i64, String> {
    parse_time_ms(s)
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 time such as 2024-05-01T00:00:00Z"))
}

/// Runs a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_cmd(args),
        Command::Scan(args) => scan_cmd(args),
        Command::Enqueue(args) => enqueue_cmd(args),
        Command::Healthcheck(args) => Ok(healthcheck_cmd(args)),
        Command::State {
            command: StateCommand::CreateTable { table },
        } => create_table_cmd(&table),
        Command::Rules { command } => match command {
            RulesCommand::Check { dir, path } => rules_check(&dir.resolve(path)),
            RulesCommand::Test {
                dir,
                path,
                quiet,
                report,
                upstream,
            } => {
                if report {
                    rules_report(&dir.resolve(path), upstream.as_deref())
                } else {
                    rules_test(&dir.resolve(path), quiet)
                }
            }
        },
    }
}

fn load_rules(dir: &std::path::Path, strictness: Strictness) -> Result<RuleSet, ExitCode> {
    report_load(dir, RuleSet::load(dir, strictness))
}

fn report_load(
    dir: &std::path::Path,
    loaded: Result<RuleSet, crate::rules::diagnostics::Diagnostics>,
) -> Result<RuleSet, ExitCode> {
    match loaded {
        Ok(set) => {
            for w in &set.warnings {
                eprintln!("warning: {w}");
            }
            Ok(set)
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} problem(s) in rules under {}",
                diags.0.len(),
                dir.display()
            );
            Err(ExitCode::from(EXIT_ERROR))
        }
    }
}

fn rules_check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let set = match load_rules(dir, Strictness::Check) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let enabled = set.enabled().count();
    println!(
        "{} rules OK ({} enabled, {} disabled, {} tests)",
        set.rules.len(),
        enabled,
        set.rules.len() - enabled,
        set.rules.iter().map(|r| r.tests.len()).sum::<usize>()
    );
    Ok(ExitCode::from(EXIT_OK))
}

fn rules_test(dir: &std::path::Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let set = match load_rules(dir, Strictness::Run) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let outcomes = testing::run_all(&set.rules);
    let mut stdout = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for o in &outcomes {
        if o.passed() {
            passed += 1;
            if !quiet {
                writeln!(stdout, "ok    {}: {}", o.rule_id, o.test)?;
            }
        } else {
            failed += 1;
            writeln!(
                stdout,
                "FAIL  {}: {}: expected {} alert(s), got {}",
                o.rule_id, o.test, o.expected, o.got
            )?;
            for d in &o.details {
                writeln!(stdout, "      {d}")?;
            }
        }
    }
    let untested: Vec<&str> = set
        .rules
        .iter()
        .filter(|r| r.tests.is_empty())
        .map(|r| r.id.as_str())
        .collect();
    if !untested.is_empty() {
        writeln!(stdout, "note: rules without tests: {}", untested.join(", "))?;
    }
    writeln!(stdout, "{passed} passed, {failed} failed")?;
    Ok(ExitCode::from(if failed > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    }))
}

fn rules_report(
    dir: &std::path::Path,
    upstream: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let set = match load_rules(dir, Strictness::Run) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let outcomes = testing::run_all(&set.rules);
    let not_ported = testing::report::NotPorted::load(dir)?;
    let up = upstream.map(testing::report::upstream).transpose()?;
    let (text, totals) = testing::report::render(&set.rules, &outcomes, &not_ported, up.as_ref());
    print!("{text}");
    let failed = outcomes.iter().any(|o| !o.passed());
    for o in outcomes.iter().filter(|o| !o.passed()) {
        eprintln!(
            "FAIL  {}: {}: expected {}, got {}",
            o.rule_id, o.test, o.expected, o.got
        );
    }
    let _ = totals;
    Ok(ExitCode::from(if failed { EXIT_FINDINGS } else { EXIT_OK }))
}

fn scan_cmd(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.resolve(None);
    let set = match report_load(&dir, RuleSet::load_without_tests(&dir, Strictness::Run)) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let inputs: Vec<InputSpec> = args.paths.iter().map(|p| InputSpec::parse(p)).collect();
    if inputs.iter().filter(|i| **i == InputSpec::Stdin).count() > 1 {
        anyhow::bail!("`-` (stdin) can be given only once");
    }
    let opts = ScanOptions {
        engine: EngineOptions {
            ignore_thresholds: args.ignore_thresholds,
            ..EngineOptions::default()
        },
        since_ms: args.since,
        until_ms: args.until,
        limits: Limits {
            max_decompressed_bytes: args.max_decompressed_bytes,
            max_record_bytes: args.max_record_bytes,
            max_nesting_depth: args.max_nesting_depth,
        },
        progress: true,
        threads: args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        ),
        join_rows: args.columns == output::Columns::DeletedKeys,
    };
    let stdout = std::io::stdout().lock();
    if args.columns == output::Columns::DeletedKeys && args.format != Format::Csv {
        anyhow::bail!("--columns deleted-keys goes with --format csv");
    }
    let mut out = output::writer(
        args.format,
        args.columns,
        std::io::BufWriter::with_capacity(64 * 1024, stdout),
    )?;
    let mut stderr = std::io::stderr().lock();
    let summary =
        scan::run(&set, &inputs, &opts, out.as_mut(), &mut stderr).context("scan failed")?;
    summary.write(&mut stderr)?;
    if summary.had_errors() {
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    if let (Some(min), Some(max)) = (args.fail_on, summary.max_severity)
        && max >= min
    {
        return Ok(ExitCode::from(EXIT_FINDINGS));
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// `trailwatch state create-table`.
fn create_table_cmd(table: &str) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let created = rt.block_on(async {
        let conf = crate::aws::sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&conf);
        crate::state::dynamodb::Table::create(&client, table).await
    })?;
    match created {
        true => println!("created DynamoDB table {table} (on demand, TTL on expires_at)"),
        false => println!("DynamoDB table {table} exists; nothing to do"),
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// `trailwatch enqueue`: the options checked, the run, the final line on stdout;
/// a run that did not send everything is an error (exit 2).
fn enqueue_cmd(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let InputSpec::S3 { bucket, prefix } = InputSpec::parse(&args.location) else {
        anyhow::bail!(
            "`{}` is not an S3 location; give s3://bucket/prefix/ (for local files, use `trailwatch scan`)",
            args.location
        );
    };
    if bucket.is_empty() {
        anyhow::bail!(
            "`{}` names no bucket; give s3://bucket/prefix/",
            args.location
        );
    }
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        anyhow::bail!("--since must be before --until");
    }
    let opts = crate::enqueue::Options {
        queue_url: args.queue_url,
        bucket,
        prefix,
        window: crate::enqueue::Window {
            since_ms: args.since,
            until_ms: args.until,
        },
        progress: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let aws = crate::aws::sdk_config().await;
        crate::enqueue::run(&opts, &aws).await
    })?;
    for (key, why) in report.unsent.iter().take(10) {
        // Keys are whatever the bucket holds: escaped, as in the logs.
        eprintln!(
            "not sent: {}",
            crate::logging::Escaped(format_args!("s3://{}/{key}: {why}", opts.bucket))
        );
    }
    if report.listed == 0 {
        eprintln!(
            "warning: nothing to send under {} (check the prefix and --since/--until)",
            args.location
        );
    }
    println!("{}", report.summary_line(&opts.queue_url));
    match report.failure(&opts.queue_url, &opts.bucket) {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(ExitCode::from(EXIT_OK)),
    }
}

fn run_cmd(args: RunArgs) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cfg = match crate::config::Config::load(args.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    let rules = match load_rules(&cfg.rules.dir, Strictness::Run) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if args.check_config {
        print!("{}", cfg.render_masked());
        println!(
            "# configuration OK; {} rules enabled from {}",
            rules.enabled().count(),
            cfg.rules.dir.display()
        );
        return Ok(ExitCode::from(EXIT_OK));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(listen_for_signals(shutdown_tx, reload_tx));
        let aws = crate::aws::sdk_config().await;
        let signals = crate::worker::Signals {
            shutdown: shutdown_rx,
            reload: reload_rx,
        };
        let opts = crate::worker::RunOptions {
            until_idle: args.until_idle,
        };
        crate::worker::run(cfg, rules, aws, signals, opts).await
    })?;
    Ok(ExitCode::from(EXIT_OK))
}

/// `trailwatch healthcheck`: 0 or 1 only, as container runtimes read it (Docker
/// reserves 2).
fn healthcheck_cmd(args: HealthcheckArgs) -> ExitCode {
    let url = args.url.unwrap_or_else(|| {
        crate::health::probe_url(std::env::var("TRAILWATCH_HEALTH_LISTEN").ok().as_deref())
    });
    let probed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
        .and_then(|rt| rt.block_on(crate::health::probe(&url, args.timeout)));
    match probed {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(why) => {
            eprintln!("healthcheck: {why}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT stop the worker gracefully; SIGHUP reloads the rules.
async fn listen_for_signals(
    shutdown: tokio::sync::watch::Sender<bool>,
    reload: tokio::sync::mpsc::Sender<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                let _ = shutdown.send(true);
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                let _ = shutdown.send(true);
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading rules");
                let _ = reload.try_send(());
            }
        }
    }
}
