//! Publishes the registry to CloudWatch with batched PutMetricData, every
//! `flush_interval` and once more at shutdown. CloudWatch being slow or down never
//! holds up intake: the publisher runs on its own, each call has a timeout, and data
//! that keeps failing is dropped (and counted) after `max_pending_flushes` attempts.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use tokio::sync::watch;

use super::{Metrics, Pending};
use crate::metrics::events::{DatapointsDropped, InternalEvent};

/// CloudWatch accepts up to 1000 datapoints per PutMetricData; stay well below.
const BATCH: usize = 500;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Publisher {
    pub client: Client,
    pub namespace: String,
    pub interval: Duration,
    pub max_pending_flushes: u32,
    pub metrics: Arc<Metrics>,
}

impl Publisher {
    /// Runs until `shutdown` turns true, then flushes once more.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            }
        }
        self.flush().await;
    }

    /// Sends what is pending; on failure keeps it for the next flush, or drops it
    /// once it has failed `max_pending_flushes` times.
    pub async fn flush(&self) {
        let mut pending = self.metrics.take_pending();
        if pending.is_empty() {
            return;
        }
        match self.send(&pending).await {
            Ok(()) => tracing::debug!(
                datapoints = pending.datapoints(),
                "metrics sent to CloudWatch"
            ),
            Err(e) => {
                pending.failures += 1;
                if pending.failures >= self.max_pending_flushes {
                    DatapointsDropped {
                        error: &e,
                        dropped: pending.datapoints(),
                    }
                    .emit(&self.metrics);
                } else {
                    tracing::warn!(error = %e, attempt = pending.failures, "PutMetricData failed; will retry with the next flush");
                    self.metrics.restore_pending(pending);
                }
            }
        }
    }

    async fn send(&self, p: &Pending) -> Result<(), String> {
        let now = aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now());
        let mut data = Vec::new();
        for (s, n) in &p.counters {
            let mut d = MetricDatum::builder()
                .metric_name(s.counter.name())
                .value(*n as f64)
                .unit(StandardUnit::Count)
                .timestamp(now);
            if let Some((k, v)) = &s.dim {
                d = d.dimensions(Dimension::builder().name(*k).value(v).build());
            }
            data.push(d.build());
        }
        if p.lag.count > 0 {
            let set = StatisticSet::builder()
                .sample_count(p.lag.count as f64)
                .sum(p.lag.sum)
                .minimum(p.lag.min)
                .maximum(p.lag.max)
                .build();
            data.push(
                MetricDatum::builder()
                    .metric_name("DeliveryLagSeconds")
                    .statistic_values(set)
                    .unit(StandardUnit::Seconds)
                    .timestamp(now)
                    .build(),
            );
        }
        for chunk in data.chunks(BATCH) {
            let call = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send();
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(crate::aws::error_text(&e)),
                Err(_) => return Err(format!("PutMetricData timed out after {CALL_TIMEOUT:?}")),
            }
        }
        Ok(())
    }
}
