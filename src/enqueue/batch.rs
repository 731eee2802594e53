//! `SendMessageBatch` calls: entries grouped under SQS's limits, and what an
//! answer leaves to retry.

use super::*;
/// What SendMessageBatch takes in one call: ten messages, 256 KiB of them in all.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;

/// Consecutive runs of messages (by body length) for SendMessageBatch calls: at
/// most [`BATCH_ENTRIES`] and [`BATCH_BYTES`] each; a message that weighs more
/// goes alone (SQS then says why it was refused).
pub fn batches(weights: &[usize]) -> Vec<Range<usize>> {
    crate::aws::batches(weights, BATCH_ENTRIES, BATCH_BYTES)
}

/// One entry SendMessageBatch reported as `Failed` (by object index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub index: usize,
    pub reason: String,
    /// SQS blames the request (a malformed or oversized message): sending it again
    /// fails the same way, so it is not retried.
    pub sender_fault: bool,
}

/// What one SendMessageBatch call answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub accepted: Vec<usize>,
    pub failed: Vec<Failure>,
}

/// A call that got no per-entry answer (throttled, unreachable, refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailed {
    pub message: String,
    /// Retrying cannot help (access denied, no such queue): stop at once.
    pub permanent: bool,
}

/// An object that was not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    pub index: usize,
    pub reason: String,
}

/// Sorts a batch's pending entries by the answer: those to send again, and those
/// given up on (refused as the sender's fault). An entry the answer does not
/// mention was not sent: it is retried.
pub fn sort_out(pending: &[usize], answer: &Answer) -> (Vec<Unsent>, Vec<Unsent>) {
    let (mut again, mut refused) = (Vec::new(), Vec::new());
    for &index in pending {
        if answer.accepted.contains(&index) {
            continue;
        }
        match answer.failed.iter().find(|f| f.index == index) {
            Some(f) if f.sender_fault => refused.push(Unsent {
                index,
                reason: f.reason.clone(),
            }),
            Some(f) => again.push(Unsent {
                index,
                reason: f.reason.clone(),
            }),
            None => again.push(Unsent {
                index,
                reason: "no result for the entry".into(),
            }),
        }
    }
    (again, refused)
}

/// How often and how patiently a batch is sent.
#[derive(Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    /// The pause after attempt n (1-based).
    pub delay: fn(u32) -> Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_attempts: 5,
            delay: crate::retry::backoff,
        }
    }
}

/// Sends one batch until every entry is accepted, refused, or out of attempts;
/// each retry sends only the entries still pending. `Ok` holds the entries that
/// were not sent; `Err` means the queue itself failed (every attempt, or once for
/// good) and nothing more should be tried.
pub async fn send_batch<F, Fut>(
    batch: Vec<usize>,
    retry: Retry,
    mut send: F,
) -> Result<Vec<Unsent>, CallFailed>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Answer, CallFailed>>,
{
    let mut pending: Vec<Unsent> = Vec::new();
    let mut indices = batch;
    let mut given_up = Vec::new();
    for attempt in 1..=retry.max_attempts {
        match send(indices.clone()).await {
            Ok(answer) => {
                let (again, refused) = sort_out(&indices, &answer);
                given_up.extend(refused);
                pending = again;
                if pending.is_empty() {
                    return Ok(given_up);
                }
                indices = pending.iter().map(|u| u.index).collect();
            }
            Err(e) if e.permanent => return Err(e),
            Err(e) if attempt == retry.max_attempts => {
                return Err(CallFailed {
                    message: format!("{} (after {attempt} attempts)", e.message),
                    permanent: false,
                });
            }
            Err(_) => {}
        }
        if attempt < retry.max_attempts {
            tokio::time::sleep((retry.delay)(attempt)).await;
        }
    }
    let attempts = retry.max_attempts;
    given_up.extend(pending.into_iter().map(|u| Unsent {
        reason: format!("{} (after {attempts} attempts)", u.reason),
        ..u
    }));
    Ok(given_up)
}

// ---------------------------------------------------------------------------
// The AWS edge
// ---------------------------------------------------------------------------
