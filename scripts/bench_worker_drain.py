"""How fast the worker drains a backlog, beside `scan s3://` of the same objects.

    .venv/bin/python scripts/bench_worker_drain.py TRAILWATCH_BINARY CORPUS_DIR [RULES_DIR]

Run by `scripts/bench --worker-drain`. Starts the AWS emulator (moto) on a free
loopback port, wires a bucket's ObjectCreated notifications to a queue, uploads
every file of CORPUS_DIR (a backlog of one notification per file), then, in the same
run and against the same objects:

  - `trailwatch scan --rules RULES s3://BUCKET/`: the time to read every object once;
  - `trailwatch run --until-idle`: the time from its start to its last "file
    processed" log line (the drain), and the CPU it used meanwhile (user + system,
    from the kernel's accounting of the child).

Prints both times, their ratio and the worker's CPU use in cores. Both read from the
same emulator, which serves one request at a time: when it is the limit, neither
can use more than it gives.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import boto3

import awslocal

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
BUCKET = "trail-bucket"


def fail(msg):
    sys.exit(f"bench worker drain: {msg}")


def parse_time(ts):
    """Seconds since the epoch of a log line's RFC 3339 timestamp (microseconds)."""
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main():
    binary, corpus = sys.argv[1], pathlib.Path(sys.argv[2])
    rules = sys.argv[3] if len(sys.argv) > 3 else str(ROOT / "rules")
    files = sorted(p for p in corpus.rglob("*.json.gz"))
    if not files:
        fail(f"no .json.gz files under {corpus}")
    moto, _, endpoint = awslocal.start_moto(fail)
    try:
        aws = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench")
        s3, sqs = boto3.client("s3", **aws), boto3.client("sqs", **aws)
        s3.create_bucket(Bucket=BUCKET)
        queue = sqs.create_queue(QueueName="trailwatch")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
        )
        for f in files:
            s3.upload_file(str(f), BUCKET, "AWSLogs/" + f.name)

        def queued():
            a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
            # One notification per file, and the s3:TestEvent of the set-up.
            return int(a["Attributes"]["ApproximateNumberOfMessages"]) >= len(files) + 1

        awslocal.wait_until(f"{len(files)} notifications", queued, fail)

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAILWATCH_"))}
        env.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_EC2_METADATA_DISABLED="true",
        )

        t0 = time.monotonic()
        scan = subprocess.run(
            [binary, "scan", "--rules", rules, f"s3://{BUCKET}/AWSLogs/"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        scan_s = time.monotonic() - t0
        if scan.returncode != 0:
            fail(f"scan exited {scan.returncode}: {scan.stderr[-2000:]}")

        work = pathlib.Path(tempfile.mkdtemp(prefix="trailwatch-drain-"))
        config = work / "trailwatch.toml"
        config.write_text(
            f"""
[source]
queue_url = "{queue}"
wait_time = "1s"
buckets = ["{BUCKET}"]

[rules]
dir = "{rules}"

# As the stack runs it: every alert on stdout (the log group); counted here.
[[sink]]
type = "stdout"

[metrics]
enabled = false

[health]
listen = ""
"""
        )
        worker_env = dict(env, TRAILWATCH_LOG="info,aws_config=warn,aws_smithy_runtime=warn")
        if os.environ.get("TRAILWATCH_MAX_IN_FLIGHT"):
            worker_env["TRAILWATCH_MAX_IN_FLIGHT"] = os.environ["TRAILWATCH_MAX_IN_FLIGHT"]
        started_wall = time.time()
        t0 = time.monotonic()
        w = subprocess.Popen(
            [binary, "run", "--config", str(config), "--until-idle", "2s", "--log-format", "json"],
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # stdout is drained on a thread while stderr is read at the end: neither
        # pipe may fill and stall the worker.
        import threading

        counted = [0]
        log_lines = []
        t_out = threading.Thread(target=lambda: counted.__setitem__(0, sum(1 for _ in w.stdout)))
        t_err = threading.Thread(target=lambda: log_lines.extend(w.stderr))
        t_out.start()
        t_err.start()
        _, status, usage = os.wait4(w.pid, 0)
        t_out.join()
        t_err.join()
        total_s = time.monotonic() - t0
        log = "".join(log_lines)
        if os.waitstatus_to_exitcode(status) != 0:
            fail(f"the worker exited {os.waitstatus_to_exitcode(status)}: {log[-2000:]}")
        done = []
        for line in log.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("fields", {}).get("message") == "file processed":
                done.append(parse_time(entry["timestamp"]))
        if len(done) != len(files):
            fail(f"the worker processed {len(done)} of {len(files)} files: {log[-2000:]}")
        drain_s = max(done) - started_wall
        cpu_s = usage.ru_utime + usage.ru_stime
        alerts = counted[0]
        print(f"backlog: {len(files)} files, {alerts} alerts from the worker")
        print(f"{'trailwatch scan s3://':<40} {scan_s:7.2f} s")
        print(
            f"{'trailwatch run (drain)':<40} {drain_s:7.2f} s  "
            f"(CPU {cpu_s:.2f} s over {total_s:.2f} s with the idle wait: {cpu_s / drain_s:.2f} cores while draining)"
        )
        print(f"drain / scan: {drain_s / scan_s:.2f}x")
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
