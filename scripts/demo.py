"""The trailwatch demo: the worker against a local AWS emulator (see scripts/demo)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading

import boto3

import awslocal
from awslocal import free_port, metric_sum

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "seed"
ACCESS_LOGS = ROOT / "tests" / "data" / "access-logs"
REGION = "us-east-1"


def wait_until(what, pred, timeout=60.0):
    awslocal.wait_until(what, pred, lambda msg: sys.exit(f"demo: {msg}"), timeout)


def main():
    binary = sys.argv[1]
    moto, _, endpoint = awslocal.start_moto(lambda msg: sys.exit(f"demo: {msg}"))
    worker = None
    try:
        print(f"demo: AWS emulator (moto) on {endpoint}")
        aws = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="demo", aws_secret_access_key="demo")
        s3, sqs, sns, cw = (boto3.client(n, **aws) for n in ("s3", "sqs", "sns", "cloudwatch"))

        bucket = "demo-cloudtrail-logs"
        s3.create_bucket(Bucket=bucket)
        dlq = sqs.create_queue(QueueName="trailwatch-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(
            QueueName="trailwatch",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        topic = sns.create_topic(Name="trailwatch-alerts")["TopicArn"]
        inbox = sqs.create_queue(QueueName="soc-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        print(f"demo: bucket s3://{bucket} -> SQS {queue} (DLQ after 3 receives); alerts -> SNS {topic}")

        work = pathlib.Path(tempfile.mkdtemp(prefix="trailwatch-demo-"))
        health = free_port()
        config = work / "trailwatch.toml"
        config.write_text(
            f"""
[source]
queue_url = "{queue}"
wait_time = "1s"
# Only this bucket's objects are read; a message naming any other is rejected.
buckets = ["{bucket}"]

[rules]
dir = "{ROOT / 'rules'}"

[[sink]]
type = "stdout"

[[sink]]
type = "sns"
topic_arn = "{topic}"
min_severity = "medium"

[join]
enabled = true

[metrics]
namespace = "TrailWatch"
flush_interval = "2s"

[health]
listen = "127.0.0.1:{health}"
"""
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID="demo",
            AWS_SECRET_ACCESS_KEY="demo",
            AWS_EC2_METADATA_DISABLED="true",
            TRAILWATCH_LOG=os.environ.get("TRAILWATCH_LOG", "warn"),
        )
        worker = subprocess.Popen(
            [binary, "run", "--config", str(config)], stdout=subprocess.PIPE, env=env, text=True
        )
        alerts = []

        def read_alerts():
            for line in worker.stdout:
                a = json.loads(line)
                alerts.append(a)
                if a.get("deleted_keys"):
                    keys = ", ".join(f"{k['key']} ({k['http_status']})" for k in a["deleted_keys"])
                    print(f"FOLLOW-UP {a['alert_id'][:8]}… {a['rule_id']}: deleted keys {keys}", flush=True)
                else:
                    print(f"ALERT [{a['severity']:>8}] {a['rule_id']}: {a['title']}", flush=True)

        reader = threading.Thread(target=read_alerts, daemon=True)
        reader.start()

        files = sorted(p for p in SAMPLES.rglob("*") if p.is_file())
        for f in files:
            key = str(f.relative_to(SAMPLES))
            s3.upload_file(str(f), bucket, key)
            print(f"demo: uploaded s3://{bucket}/{key}")
        # S3 server access logs name the keys a DeleteObjects batch removed; they
        # arrive later and may share the queue (told apart by content).
        for f in sorted(p for p in ACCESS_LOGS.rglob("*") if p.is_file()):
            key = "access-logs/" + str(f.relative_to(ACCESS_LOGS))
            s3.upload_file(str(f), bucket, key)
            print(f"demo: uploaded s3://{bucket}/{key} (S3 server access log)")

        def drained():
            a = sqs.get_queue_attributes(
                QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            return a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"

        wait_until("the worker to process every file", drained)
        wait_until("the metrics flush", lambda: metric_sum(cw, "FilesProcessed") >= 3, timeout=30)
        inbox_msgs = []
        while True:
            got = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not got:
                break
            inbox_msgs.extend(got)
        print()
        follow = sum(1 for a in alerts if a.get("deleted_keys"))
        print(f"demo: {len(alerts) - follow} alerts and {follow} follow-ups with deleted keys on stdout, "
              f"{len(inbox_msgs)} published to SNS (medium and above)")
        for name in ("FilesProcessed", "EventsProcessed", "RecordErrors", "FileErrors"):
            print(f"demo: CloudWatch TrailWatch/{name} = {metric_sum(cw, name):g}")
        for rule in sorted({a["rule_id"] for a in alerts}):
            n = metric_sum(cw, "Alerts", [{"Name": "RuleId", "Value": rule}])
            print(f"demo: CloudWatch TrailWatch/Alerts RuleId={rule} = {n:g}")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        reader.join(timeout=5)
        print(f"demo: worker stopped with exit code {code}")
        if code != 0 or not alerts:
            sys.exit(1)
    finally:
        if worker and worker.poll() is None:
            worker.kill()
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
