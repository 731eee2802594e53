//! A worker test bed: an emulator with a trail bucket notifying a queue (with a
//! dead-letter queue), an alert topic with a subscribed inbox queue, and helpers to
//! run `trailwatch run` as a real process against them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto::Moto;

pub const BUCKET: &str = "trail-logs";

pub struct Bed {
    pub moto: Moto,
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub cw: aws_sdk_cloudwatch::Client,
    pub queue: String,
    pub dlq: String,
    pub topic: String,
    pub inbox: String,
    pub dir: tempfile::TempDir,
}

/// A queue's ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&A::QueueArn]
        .clone()
}

/// Sends `bucket`'s ObjectCreated notifications to the queue `arn`.
pub async fn notify(s3: &aws_sdk_s3::Client, bucket: &str, arn: &str) {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    let q = QueueConfiguration::builder()
        .queue_arn(arn)
        .events(Event::S3ObjectCreated)
        .build()
        .unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(q)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Polls `cond` every 100 ms until it holds or `secs` pass.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Bed {
    /// `max_receive`: the queue's maxReceiveCount before a message goes to the DLQ.
    pub fn new(max_receive: u32) -> Bed {
        let moto = Moto::start();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (s3, sqs, sns, cw, queue, dlq, topic, inbox) = rt.block_on(async {
            let conf = moto.sdk_config().await;
            let s3 = moto.s3().await;
            let sqs = aws_sdk_sqs::Client::new(&conf);
            let sns = aws_sdk_sns::Client::new(&conf);
            let cw = aws_sdk_cloudwatch::Client::new(&conf);
            s3.create_bucket().bucket(BUCKET).send().await.unwrap();
            let dlq = sqs.create_queue().queue_name("trailwatch-dlq").send().await.unwrap().queue_url.unwrap();
            let dlq_arn = queue_arn(&sqs, &dlq).await;
            let queue = sqs
                .create_queue()
                .queue_name("trailwatch")
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                    serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()})
                        .to_string(),
                )
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            notify(&s3, BUCKET, &queue_arn(&sqs, &queue).await).await;
            let topic = sns.create_topic().name("alerts").send().await.unwrap().topic_arn.unwrap();
            let inbox = sqs.create_queue().queue_name("inbox").send().await.unwrap().queue_url.unwrap();
            let inbox_arn = queue_arn(&sqs, &inbox).await;
            sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(inbox_arn).send().await.unwrap();
            (s3, sqs, sns, cw, queue, dlq, topic, inbox)
        });
        Bed {
            moto,
            rt,
            s3,
            sqs,
            sns,
            cw,
            queue,
            dlq,
            topic,
            inbox,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn alerts_path(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    /// Writes a worker config (file sink + SNS sink, fast polling) and returns its path.
    /// `extra` is appended as TOML (e.g. more sinks); `rules` is the rules directory.
    pub fn config(&self, rules: &Path, extra: &str) -> PathBuf {
        let p = self.dir.path().join("trailwatch.toml");
        let text = format!(
            r#"
[source]
queue_url = "{queue}"
wait_time = "1s"
visibility_timeout = "30s"
retry_delay = "0s"
shutdown_grace = "20s"

[rules]
dir = "{rules}"

[[sink]]
type = "file"
path = "{alerts}"

[[sink]]
type = "sns"
topic_arn = "{topic}"
min_severity = "high"

[metrics]
flush_interval = "1s"

[health]
listen = ""
{extra}
"#,
            queue = self.queue,
            rules = rules.display(),
            alerts = self.alerts_path().display(),
            topic = self.topic,
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `trailwatch run --config CONFIG ARGS...`; its stderr goes to `worker.log`.
    pub fn spawn(&self, config: &Path, args: &[&str]) -> Child {
        self.spawn_at(config, args, &self.moto.endpoint)
    }

    /// [`Bed::spawn`] with more environment variables.
    pub fn spawn_with(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.spawn_env(config, args, &self.moto.endpoint, env)
    }

    /// [`Bed::spawn`] with the worker's AWS endpoint at `endpoint` (a proxy).
    pub fn spawn_at(&self, config: &Path, args: &[&str], endpoint: &str) -> Child {
        self.spawn_env(config, args, endpoint, &[])
    }

    fn spawn_env(
        &self,
        config: &Path,
        args: &[&str],
        endpoint: &str,
        env: &[(&str, &str)],
    ) -> Child {
        self.spawn_logged(config, args, endpoint, env, "worker.log")
    }

    /// [`Bed::spawn_with`] with stderr appended to `log` in the bed's directory
    /// (read it with [`Bed::log_of`]): workers running side by side keep apart.
    pub fn spawn_logged(
        &self,
        config: &Path,
        args: &[&str],
        endpoint: &str,
        env: &[(&str, &str)],
        log: &str,
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(log))
            .unwrap();
        let mut c = super::trailwatch();
        self.moto.apply(&mut c);
        c.env("AWS_ENDPOINT_URL", endpoint);
        c.env(
            "TRAILWATCH_LOG",
            "info,aws_config=warn,aws_smithy_runtime=warn",
        )
        .args(["run", "--config"])
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .envs(env.iter().copied());
        c.spawn().expect("start the worker")
    }

    pub fn log(&self) -> String {
        self.log_of("worker.log")
    }

    /// The log a [`Bed::spawn_logged`] worker wrote to so far.
    pub fn log_of(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
    }

    /// A DynamoDB client on the emulator.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.rt
            .block_on(async { aws_sdk_dynamodb::Client::new(&self.moto.sdk_config().await) })
    }

    /// Uploads an object to the trail bucket; its ETag.
    pub fn put_etag(&self, key: &str, body: Vec<u8>) -> String {
        self.rt.block_on(async {
            self.s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap()
                .e_tag
                .unwrap_or_default()
        })
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub fn wait_exit(&self, child: &mut Child, secs: u64) -> i32 {
        let mut code = None;
        wait_for("the worker to exit", secs, || {
            code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code.unwrap()
    }

    pub fn put(&self, key: &str, body: Vec<u8>) {
        self.rt.block_on(async {
            self.s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        });
    }

    pub fn send(&self, body: &str) {
        self.rt.block_on(async {
            self.sqs
                .send_message()
                .queue_url(&self.queue)
                .message_body(body)
                .send()
                .await
                .unwrap();
        });
    }

    /// Visible plus in-flight messages of a queue.
    pub fn depth(&self, queue: &str) -> u64 {
        self.rt.block_on(async {
            use aws_sdk_sqs::types::QueueAttributeName as A;
            let a = self
                .sqs
                .get_queue_attributes()
                .queue_url(queue)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap();
            a[&A::ApproximateNumberOfMessages].parse::<u64>().unwrap()
                + a[&A::ApproximateNumberOfMessagesNotVisible]
                    .parse::<u64>()
                    .unwrap()
        })
    }

    /// The alerts written to the file sink so far.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.alerts_path())
            .map(|t| super::jsonl(&t))
            .unwrap_or_default()
    }

    /// A new bucket whose ObjectCreated notifications go to a new queue; its URL.
    pub fn bucket_with_queue(&self, bucket: &str, queue: &str) -> String {
        self.rt.block_on(async {
            let url = self
                .sqs
                .create_queue()
                .queue_name(queue)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            self.s3.create_bucket().bucket(bucket).send().await.unwrap();
            notify(&self.s3, bucket, &queue_arn(&self.sqs, &url).await).await;
            url
        })
    }

    /// The `actor.name` of every alert on the file sink.
    pub fn actor_names(&self) -> Vec<String> {
        self.alerts()
            .iter()
            .map(|a| a["actor"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Runs the worker with `rules` until the queue has been idle for 3 s; asserts
    /// it exits 0.
    pub fn drain(&self, rules: &Path) {
        let cfg = self.config(rules, "");
        let mut w = self.spawn(&cfg, &["--until-idle", "3s"]);
        assert_eq!(self.wait_exit(&mut w, 90), 0, "{}", self.log());
    }

    /// Messages the SNS topic delivered to the inbox queue (drains it).
    pub fn inbox(&self) -> Vec<serde_json::Value> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            loop {
                let r = self
                    .sqs
                    .receive_message()
                    .queue_url(&self.inbox)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .unwrap();
                let msgs = r.messages.unwrap_or_default();
                if msgs.is_empty() {
                    return out;
                }
                for m in msgs {
                    out.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
                }
            }
        })
    }

    /// Sum of a CloudWatch metric in the TrailWatch namespace (with one optional dimension).
    pub fn metric(&self, name: &str, dim: Option<(&str, &str)>) -> f64 {
        self.rt.block_on(async {
            let now = std::time::SystemTime::now();
            let mut q = self
                .cw
                .get_metric_statistics()
                .namespace("TrailWatch")
                .metric_name(name)
                .start_time((now - Duration::from_secs(3600)).into())
                .end_time((now + Duration::from_secs(60)).into())
                .period(60)
                .statistics(aws_sdk_cloudwatch::types::Statistic::Sum);
            if let Some((k, v)) = dim {
                q = q.dimensions(
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name(k)
                        .value(v)
                        .build(),
                );
            }
            q.send()
                .await
                .unwrap()
                .datapoints
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.sum)
                .sum()
        })
    }
}

/// An S3 ObjectCreated notification for one object of the trail bucket, as S3
/// sends it (the key URL-encoded the way S3 does; `etag` without quotes).
pub fn s3_notification(key: &str, size: u64, etag: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2025-04-30T17:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
            "object": {"key": encoded, "size": size, "eTag": etag.trim_matches('"')}
        }
    }]})
    .to_string()
}

/// Sends SIGTERM (or another signal) to a child.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}
