//! The AWS edge of `enqueue`: listing the prefix on S3, sending the batches to
//! SQS, the progress bar.

use super::*;
/// What `trailwatch enqueue` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub queue_url: String,
    pub bucket: String,
    pub prefix: String,
    pub window: Window,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// How a run ended: the counts of the final line, and what was not sent.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: u64,
    pub bytes: u64,
    pub listed: u64,
    pub skipped: Skipped,
    /// Objects given up on (each with its key and why).
    pub unsent: Vec<(String, String)>,
    /// Why sending stopped early, when it did: the objects not confirmed sent are
    /// `listed - sent`.
    pub stopped: Option<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn summary_line(&self, queue: &str) -> String {
        summary_line(self.sent, self.bytes, queue, self.elapsed, &self.skipped)
    }

    /// The error for a run that did not send everything, or `None`. A partial run
    /// says how to send the rest: objects already sent go again, which costs a
    /// second evaluation but no new alert ids.
    pub fn failure(&self, queue: &str, bucket: &str) -> Option<String> {
        let missing = self.listed - self.sent;
        if missing == 0 {
            return None;
        }
        let why = match (&self.stopped, self.unsent.first()) {
            (Some(stop), _) => format!("sending stopped: {stop}"),
            (None, Some((key, reason))) => format!("the first: s3://{bucket}/{key}: {reason}"),
            (None, None) => "no answer from SQS".into(),
        };
        let mut e = format!(
            "{missing} of {} objects were not sent to {queue} ({why})",
            self.listed
        );
        if self.sent > 0 {
            e.push_str(
                "; rerunning with a narrower prefix or --since/--until sends them again (an \
                 object sent twice is evaluated twice, with the same alert ids)",
            );
        }
        Some(e)
    }
}

/// Batches sent at once: one call at a time caps a backfill at a few hundred
/// objects a second.
const SENDS_IN_FLIGHT: usize = 8;

/// Lists the prefix (pruned by the window), then sends a notification per object.
pub async fn run(opts: &Options, aws: &aws_config::SdkConfig) -> anyhow::Result<Report> {
    let started = Instant::now();
    let s3 = crate::aws::s3_client(aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let bar = progress_bar(opts.progress);
    let (objects, skipped) = walk(&s3, opts, bar.as_ref()).await?;
    let region = aws.region().map_or("us-east-1", |r| r.as_ref());
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let bodies: Vec<String> = objects
        .iter()
        .map(|o| notification_body(&opts.bucket, region, o, now_ms))
        .collect();
    if let Some(b) = &bar {
        b.set_length(objects.len() as u64);
        b.set_position(0);
        b.set_style(bar_style("{bar:40} {pos}/{len} objects sent  {msg}"));
    }
    let mut report = send_all(&sqs, &opts.queue_url, &objects, bodies, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.skipped = skipped;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

fn progress_bar(wanted: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (wanted && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(bar_style("{spinner} listing: {pos} objects  {msg}"));
        b.enable_steady_tick(Duration::from_millis(200));
        b
    })
}

/// Every object to send, sorted by key, and what was skipped.
async fn walk(
    s3: &aws_sdk_s3::Client,
    opts: &Options,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<(Vec<Listed>, Skipped)> {
    let mut skipped = Skipped::default();
    let mut kept = Vec::new();
    let mut todo = vec![(opts.prefix.clone(), first_step(&opts.prefix, &opts.window))];
    while let Some((prefix, what)) = todo.pop() {
        let delimited = match what {
            Step::Skip(why) => {
                skipped.pruned(why);
                continue;
            }
            Step::Descend => true,
            Step::ListAll => false,
        };
        if let Some(b) = bar {
            b.set_message(prefix.clone());
        }
        let (objects, folders) = list_level(s3, &opts.bucket, &prefix, delimited).await?;
        for obj in objects {
            skipped.admit(obj, &mut kept);
        }
        if let Some(b) = bar {
            b.set_position(kept.len() as u64);
        }
        todo.extend(folders.into_iter().rev().map(|f| {
            let s = step(&f, &opts.window);
            (f, s)
        }));
    }
    kept.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((kept, skipped))
}

/// One `ListObjectsV2` walk of `prefix` (every page): its objects and, with the
/// delimiter, its folders. Keys are asked for URL-encoded and decoded here: a key
/// with a control character (which XML cannot carry) would otherwise make the
/// whole listing unreadable, and whoever can write to the bucket could stop
/// backfills with one object.
async fn list_level(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimited: bool,
) -> anyhow::Result<(Vec<Listed>, Vec<String>)> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_delimiter(delimited.then(|| "/".to_owned()))
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .into_paginator()
        .send();
    let (mut objects, mut folders) = (Vec::new(), Vec::new());
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            let hint = match crate::aws::error_code(&e) {
                Some("AccessDenied") => "; the caller needs s3:ListBucket on the bucket",
                _ => "",
            };
            anyhow!(
                "listing s3://{bucket}/{prefix}: {}{hint}",
                crate::aws::error_text(&e)
            )
        })?;
        objects.extend(page.contents().iter().filter_map(|o| {
            Some(Listed {
                key: decode_s3_key(o.key()?),
                size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                etag: o.e_tag().map(|e| e.trim_matches('"').to_owned()),
                last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
            })
        }));
        folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(decode_s3_key)),
        );
    }
    Ok((objects, folders))
}

/// Sends every body, [`SENDS_IN_FLIGHT`] batches at a time, and counts what went.
async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    objects: &[Listed],
    bodies: Vec<String>,
    bar: Option<&indicatif::ProgressBar>,
) -> Report {
    let weights: Vec<usize> = bodies.iter().map(String::len).collect();
    let bodies = Arc::new(bodies);
    let mut report = Report {
        listed: objects.len() as u64,
        ..Report::default()
    };
    let mut todo = batches(&weights).into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while report.stopped.is_none() && running.len() < SENDS_IN_FLIGHT {
            let Some(batch) = todo.next() else { break };
            let (sqs, queue, bodies) = (sqs.clone(), queue.to_owned(), bodies.clone());
            running.spawn(async move {
                let indices: Vec<usize> = batch.clone().collect();
                let sent = send_batch(indices, Retry::default(), |pending| {
                    call(sqs.clone(), queue.clone(), bodies.clone(), pending)
                })
                .await;
                (batch, sent)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (batch, sent) = match joined {
            Ok(done) => done,
            Err(e) => {
                report
                    .stopped
                    .get_or_insert_with(|| format!("a send task failed: {e}"));
                continue;
            }
        };
        match sent {
            Ok(unsent) => {
                let accepted = batch
                    .clone()
                    .filter(|i| !unsent.iter().any(|u| u.index == *i));
                for i in accepted {
                    report.sent += 1;
                    report.bytes += objects[i].size;
                }
                report.unsent.extend(
                    unsent
                        .into_iter()
                        .map(|u| (objects[u.index].key.clone(), u.reason)),
                );
                if let Some(b) = bar {
                    b.inc(batch.len() as u64);
                }
            }
            Err(e) => {
                report.stopped.get_or_insert(e.message);
                running.abort_all();
            }
        }
    }
    report
}

/// One SendMessageBatch call with the entries `pending` (ids are object indices).
async fn call(
    sqs: aws_sdk_sqs::Client,
    queue: String,
    bodies: Arc<Vec<String>>,
    pending: Vec<usize>,
) -> Result<Answer, CallFailed> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let entries = pending
        .iter()
        .map(|&i| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&bodies[i])
                .build()
                .expect("id and body are set")
        })
        .collect();
    let out = sqs
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| call_failed(&queue, &e))?;
    Ok(Answer {
        accepted: out
            .successful()
            .iter()
            .filter_map(|s| s.id().parse().ok())
            .collect(),
        failed: out
            .failed()
            .iter()
            .filter_map(|f| {
                Some(Failure {
                    index: f.id().parse().ok()?,
                    reason: match f.message() {
                        Some(m) => format!("{}: {m}", f.code()),
                        None => f.code().to_owned(),
                    },
                    sender_fault: f.sender_fault(),
                })
            })
            .collect(),
    })
}

/// A failed call, with what to do about the failures that retrying cannot fix.
fn call_failed<E>(
    queue: &str,
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> CallFailed
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = crate::aws::error_text(e);
    let code = crate::aws::error_code(e).unwrap_or_default();
    let hint = if code.contains("AccessDenied") {
        Some(
            "the queue policy must let your principal send: add its ARN to the stack's \
             BackfillPrincipalArns parameter, and allow sqs:SendMessage in its IAM policy",
        )
    } else if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
        Some("check --queue-url (the queue's URL, as `aws sqs get-queue-url` prints it)")
    } else {
        None
    };
    let text = text.trim_end_matches('.');
    CallFailed {
        message: match hint {
            Some(h) => format!("SendMessageBatch to {queue}: {text}; {h}"),
            None => format!("SendMessageBatch to {queue}: {text}"),
        },
        permanent: hint.is_some(),
    }
}
