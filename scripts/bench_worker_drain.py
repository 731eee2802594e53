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

The pieces (the emulator's set-up, the timed scan, a worker run and its log) are
shared with `bench_fleet.py`.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import boto3

import awslocal

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
BUCKET = "trail-bucket"
PREFIX = "AWSLogs/"


def fail(msg):
    sys.exit(f"bench worker drain: {msg}")


def parse_time(ts):
    """Seconds since the epoch of a log line's RFC 3339 timestamp (microseconds)."""
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def stop_moto(moto):
    """Stops the emulator; kills it if it does not stop within 10 s (a busy one)."""
    moto.terminate()
    try:
        moto.wait(timeout=10)
    except subprocess.TimeoutExpired:
        moto.kill()
        moto.wait()


def corpus_files(corpus, fail):
    files = sorted(p for p in pathlib.Path(corpus).rglob("*.json.gz"))
    if not files:
        fail(f"no .json.gz files under {corpus}")
    return files


def clients(endpoint, *services):
    aws = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench")
    return [boto3.client(s, **aws) for s in services]


def binary_env(endpoint):
    """The environment of the binary: the emulator's, nothing of the host's AWS or
    TRAILWATCH settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAILWATCH_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def queue_depth(sqs, queue):
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    return int(a["Attributes"]["ApproximateNumberOfMessages"])


def upload_backlog(s3, sqs, files, fail, notify=True):
    """The bucket with every file under PREFIX; with `notify`, a queue its
    ObjectCreated notifications go to, holding one per file (and the set-up's
    s3:TestEvent) when this returns. Returns the queue's URL (None without)."""
    s3.create_bucket(Bucket=BUCKET)
    queue = None
    if notify:
        queue = sqs.create_queue(QueueName="trailwatch")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
        )
    for f in files:
        s3.upload_file(str(f), BUCKET, PREFIX + f.name)
    if notify:
        awslocal.wait_until(
            f"{len(files)} notifications", lambda: queue_depth(sqs, queue) >= len(files) + 1, fail
        )
    return queue


def timed_scan(binary, rules, env, fail, out=subprocess.DEVNULL):
    """Seconds `trailwatch scan --rules RULES s3://BUCKET/PREFIX` takes and its
    stderr (the summary); its alerts go to `out`."""
    t0 = time.monotonic()
    scan = subprocess.run(
        [binary, "scan", "--rules", rules, f"s3://{BUCKET}/{PREFIX}"],
        env=env,
        stdout=out,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.monotonic() - t0
    if scan.returncode != 0:
        fail(f"scan exited {scan.returncode}: {scan.stderr[-2000:]}")
    return seconds, scan.stderr


def worker_config(path, queue, rules, extra=""):
    """A worker's configuration as the stack runs it (every alert on stdout, the log
    group), with `extra` TOML appended; written to `path`."""
    path.write_text(
        f"""
[source]
queue_url = "{queue}"
wait_time = "1s"
buckets = ["{BUCKET}"]

[rules]
dir = "{rules}"

[[sink]]
type = "stdout"

[metrics]
enabled = false

[health]
listen = ""
{extra}
"""
    )
    return path


class Worker:
    """`trailwatch run --config CONFIG --until-idle IDLE --log-format json`: stdout
    to `stdout` (a file) or counted lines, stderr (the JSON log) kept; neither pipe
    may fill and stall the worker."""

    def __init__(self, binary, config, env, idle="2s", stdout=None):
        self.counted = [0]
        self.log_lines = []
        self.proc = subprocess.Popen(
            [binary, "run", "--config", str(config), "--until-idle", idle, "--log-format", "json"],
            env=env,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.threads = [threading.Thread(target=lambda: self.log_lines.extend(self.proc.stderr))]
        if stdout is None:
            self.threads.append(
                threading.Thread(target=lambda: self.counted.__setitem__(0, sum(1 for _ in self.proc.stdout)))
            )
        for t in self.threads:
            t.start()

    def wait(self, fail):
        """Waits for the exit; returns (the log's JSON entries, CPU seconds of the
        process, its stdout lines when counted); `fail`s on a non-zero exit."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        for t in self.threads:
            t.join()
        log = "".join(self.log_lines)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            fail(f"a worker exited {code}: {log[-2000:]}")
        return log_entries(log), usage.ru_utime + usage.ru_stime, self.counted[0]


def log_entries(log):
    out = []
    for line in log.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def entries_named(entries, message):
    return [e for e in entries if e.get("fields", {}).get("message") == message]


def processed(entries):
    """The "file processed" entries: (epoch seconds, records)."""
    return [(parse_time(e["timestamp"]), int(e["fields"].get("records", 0))) for e in entries_named(entries, "file processed")]


def main():
    binary, corpus = sys.argv[1], pathlib.Path(sys.argv[2])
    rules = sys.argv[3] if len(sys.argv) > 3 else str(ROOT / "rules")
    files = corpus_files(corpus, fail)
    moto, _, endpoint = awslocal.start_moto(fail)
    try:
        s3, sqs = clients(endpoint, "s3", "sqs")
        queue = upload_backlog(s3, sqs, files, fail)
        env = binary_env(endpoint)

        scan_s, _ = timed_scan(binary, rules, env, fail)

        work = pathlib.Path(tempfile.mkdtemp(prefix="trailwatch-drain-"))
        config = worker_config(work / "trailwatch.toml", queue, rules)
        worker_env = dict(env, TRAILWATCH_LOG="info,aws_config=warn,aws_smithy_runtime=warn")
        if os.environ.get("TRAILWATCH_MAX_IN_FLIGHT"):
            worker_env["TRAILWATCH_MAX_IN_FLIGHT"] = os.environ["TRAILWATCH_MAX_IN_FLIGHT"]
        started_wall = time.time()
        t0 = time.monotonic()
        w = Worker(binary, config, worker_env)
        entries, cpu_s, alerts = w.wait(fail)
        total_s = time.monotonic() - t0
        done = processed(entries)
        if len(done) != len(files):
            fail(f"the worker processed {len(done)} of {len(files)} files: {''.join(w.log_lines)[-2000:]}")
        drain_s = max(t for t, _ in done) - started_wall
        print(f"backlog: {len(files)} files, {alerts} alerts from the worker")
        print(f"{'trailwatch scan s3://':<40} {scan_s:7.2f} s")
        print(
            f"{'trailwatch run (drain)':<40} {drain_s:7.2f} s  "
            f"(CPU {cpu_s:.2f} s over {total_s:.2f} s with the idle wait: {cpu_s / drain_s:.2f} cores while draining)"
        )
        print(f"drain / scan: {drain_s / scan_s:.2f}x")
    finally:
        stop_moto(moto)


if __name__ == "__main__":
    main()
