"""A fleet of workers with their detection state in DynamoDB, draining one backlog.

    .venv/bin/python scripts/bench_fleet.py TRAILWATCH_BINARY CORPUS_DIR [RULES_DIR]

Run by `scripts/bench --fleet`. Starts the AWS emulator (moto) on a free loopback
port and uploads every file of CORPUS_DIR to a bucket once; then, in the same run
and against the same objects:

  - `trailwatch scan --rules RULES s3://BUCKET/`: the reference (every object read
    once, state in memory);
  - for each run below, a fresh queue filled by `trailwatch enqueue` (one
    notification per object, as a backfill) and, for DynamoDB, a fresh table from
    `trailwatch state create-table`; N workers (`trailwatch run --until-idle`)
    started at once drain it. The drain is the time from their start to the last
    "file processed" line of any of them. Runs: one worker with its state in memory
    (what DynamoDB costs on the emulator), then 1, 2 and 3 workers with DynamoDB.

For each run: drain time, events/s, the speed-up over one worker with DynamoDB, the
CPU of the workers and of the emulator (from the kernel's accounting: the
emulator, one Python process, is the bottleneck when it nears one core), and
whether the alert ids are those of the scan. From the workers' "DynamoDB state
usage" log lines: requests per 1,000 events, read and write units, and the dollar
cost per million events at DynamoDB's on-demand list prices (us-east-1, since
November 2024): $0.625 per million write request units, $0.125 per million read
request units. The worker works the units out from the items' sizes as DynamoDB
bills them (a write 1 unit per KB, conditional failures included; a strongly
consistent read 1 unit per 4 KB), since the emulator reports its own; the items'
sizes at the end of the last run are printed beside them.

Set BENCH_FLEET_WORKERS (default "1 2 3") to choose the fleet sizes.
"""

import collections
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import awslocal
from bench_worker_drain import (
    BUCKET,
    PREFIX,
    ROOT,
    Worker,
    binary_env,
    clients,
    corpus_files,
    entries_named,
    processed,
    queue_depth,
    stop_moto,
    timed_scan,
    upload_backlog,
    worker_config,
)

# On-demand list prices, us-east-1, since November 2024: dollars per request unit.
WRITE_UNIT_PRICE = 0.625 / 1e6
READ_UNIT_PRICE = 0.125 / 1e6

ALERT = re.compile(r'^\{"alert_id":"([0-9a-f]+)","rule_id":"([^"]+)"')


def fail(msg):
    sys.exit(f"bench fleet: {msg}")


def cpu_seconds(pid):
    """User + system CPU seconds of a running process (all its threads)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler(threading.Thread):
    """Samples the CPU seconds of processes every `every` seconds, so that what
    they used over the drain, and not over the idle wait after it, is known."""

    def __init__(self, every=0.05):
        super().__init__(daemon=True)
        self.every = every
        self.pids = []
        self.samples = []  # (epoch seconds, {pid: CPU seconds})
        self.lock = threading.Lock()
        self.done = threading.Event()

    def watch(self, pid):
        with self.lock:
            self.pids.append(pid)
        self.sample()

    def sample(self):
        now, cpu = time.time(), {}
        with self.lock:
            pids = list(self.pids)
        for pid in pids:
            try:
                cpu[pid] = cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                pass
        with self.lock:
            self.samples.append((now, cpu))

    def run(self):
        while not self.done.wait(self.every):
            self.sample()

    def used(self, pid, start, end):
        """CPU seconds `pid` used between the samples nearest `start` and `end`."""
        with self.lock:
            have = [(t, c[pid]) for t, c in self.samples if pid in c]
        before = [c for t, c in have if t <= start] or [have[0][1]]
        until = [c for t, c in have if t <= end] or [have[0][1]]
        return max(0.0, until[-1] - before[-1])


def alert_ids(paths):
    """{rule: {alert ids}} of JSON-lines alert files."""
    out = collections.defaultdict(set)
    for p in paths:
        with open(p) as f:
            for line in f:
                m = ALERT.match(line)
                if not m:
                    fail(f"{p}: not an alert line: {line[:200]}")
                out[m.group(2)].add(m.group(1))
    return out


def id_differences(want, got):
    """'same' or a per-rule count of the ids only one side has."""
    diffs = []
    for rule in sorted(set(want) | set(got)):
        w, g = want.get(rule, set()), got.get(rule, set())
        if w != g:
            diffs.append(f"{rule}: {len(w - g)} only in scan, {len(g - w)} only in the fleet")
    return "same as scan" if not diffs else "DIFFERENT: " + "; ".join(diffs)


def item_size(item):
    """An item's size as DynamoDB counts it: attribute names plus values."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        (kind, v), = value.items()
        if kind in ("S", "N"):
            size += len(str(v).encode())
        elif kind in ("SS", "NS"):
            size += sum(len(x.encode()) for x in v)
        else:
            size += len(repr(v).encode())
    return size


def table_profile(ddb, table):
    """Items by kind (the prefix of pk): [count, over 1 KB, largest bytes, write
    units beyond one per item (a write of an item of S bytes is ceil(S / 1 KB)
    units)]."""
    kinds = collections.defaultdict(lambda: [0, 0, 0, 0])
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            k = kinds[item["pk"]["S"].split("#", 1)[0]]
            size = item_size(item)
            k[0] += 1
            k[1] += size > 1024
            k[2] = max(k[2], size)
            k[3] += max(0, math.ceil(size / 1024) - 1)
    return dict(kinds)


def run_binary(binary, args, env):
    r = subprocess.run([binary, *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"trailwatch {' '.join(args)} exited {r.returncode}: {r.stdout[-1000:]}{r.stderr[-1000:]}")
    return r


def main():
    binary, corpus = sys.argv[1], pathlib.Path(sys.argv[2])
    rules = sys.argv[3] if len(sys.argv) > 3 else str(ROOT / "rules")
    sizes = [int(n) for n in os.environ.get("BENCH_FLEET_WORKERS", "1 2 3").split()]
    files = corpus_files(corpus, fail)
    work = pathlib.Path(tempfile.mkdtemp(prefix="trailwatch-fleet-"))
    # The binary as it is now: a build elsewhere may replace the file during the run.
    shutil.copy2(binary, work / "trailwatch")
    binary = str(work / "trailwatch")
    moto, _, endpoint = awslocal.start_moto(fail)
    try:
        s3, sqs, ddb = clients(endpoint, "s3", "sqs", "dynamodb")
        upload_backlog(s3, sqs, files, fail, notify=False)
        env = binary_env(endpoint)

        scan_out = work / "scan.jsonl"
        with open(scan_out, "w") as out:
            scan_s, scan_err = timed_scan(binary, rules, env, fail, out=out)
        m = re.search(r"(\d+) records", scan_err)
        if not m:
            fail(f"no record count in the scan's summary: {scan_err[-1000:]}")
        events = int(m.group(1))
        want = alert_ids([scan_out])
        scan_lines = sum(1 for _ in open(scan_out))
        print(
            f"backlog: {len(files)} files, {events} events; scan: {sum(map(len, want.values()))} alert ids"
            f"; {os.cpu_count()} CPUs"
        )

        runs = [("memory", 1)] + [("dynamodb", n) for n in sizes]
        results = []
        for i, (backend, n) in enumerate(runs):
            queue = sqs.create_queue(QueueName=f"fleet-{i}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
            run_binary(binary, ["enqueue", "--queue-url", queue, f"s3://{BUCKET}/{PREFIX}"], env)
            awslocal.wait_until(f"{len(files)} messages", lambda: queue_depth(sqs, queue) >= len(files), fail)
            extra = ""
            table = None
            if backend == "dynamodb":
                table = f"fleet-{i}"
                run_binary(binary, ["state", "create-table", "--table", table], env)
                extra = f'[state]\nbackend = "dynamodb"\ntable = "{table}"\n'
            worker_env = dict(env, TRAILWATCH_LOG="info,aws_config=warn,aws_smithy_runtime=warn")
            sinks = [work / f"run{i}-w{j}.jsonl" for j in range(n)]
            outs = [open(s, "w") for s in sinks]
            configs = [worker_config(work / f"run{i}-w{j}.toml", queue, rules, extra) for j in range(n)]
            sampler = CpuSampler()
            sampler.watch(moto.pid)
            sampler.start()
            started_wall = time.time()
            workers = [Worker(binary, configs[j], worker_env, stdout=outs[j]) for j in range(n)]
            for w in workers:
                sampler.watch(w.proc.pid)
            done, usage, warnings = [], collections.Counter(), collections.Counter()
            for j, w in enumerate(workers):
                entries, _, _ = w.wait(fail)
                (work / f"run{i}-w{j}.log").write_text("".join(w.log_lines))
                done.extend(processed(entries))
                for e in entries:
                    if e.get("level") in ("WARN", "ERROR"):
                        warnings[e.get("fields", {}).get("message", "?")] += 1
                for e in entries_named(entries, "DynamoDB state usage"):
                    for k in ("reads", "writes", "read_units", "write_units"):
                        usage[k] += float(e["fields"][k])
            sampler.done.set()
            sampler.join()
            for o in outs:
                o.close()
            if len(done) != len(files):
                fail(f"run {backend} x{n}: {len(done)} files processed for {len(files)} objects")
            ended = max(t for t, _ in done)
            drain_s = ended - started_wall
            cpu_s = sum(sampler.used(w.proc.pid, started_wall, ended) for w in workers)
            moto_cpu = sampler.used(moto.pid, started_wall, ended)
            drained = sum(r for _, r in done)
            if drained != events:
                fail(f"run {backend} x{n}: {drained} events processed, the scan read {events}")
            results.append(
                dict(
                    backend=backend,
                    workers=n,
                    drain=drain_s,
                    cpu=cpu_s / drain_s,
                    moto=moto_cpu / drain_s,
                    ids=id_differences(want, alert_ids(sinks)),
                    lines=sum(1 for p in sinks for _ in open(p)),
                    warnings=warnings,
                    usage=usage,
                    table=table,
                    profile=table_profile(ddb, table) if table else None,
                )
            )
            if queue_depth(sqs, queue) != 0:
                fail(f"run {backend} x{n}: the queue is not empty")

        base = next((r["drain"] for r in results if r["backend"] == "dynamodb" and r["workers"] == 1), None)
        print()
        print(f"{'run':<34} {'drain':>8} {'events/s':>9} {'speed-up':>8} {'workers CPU':>12} {'emulator CPU':>13}  alert ids")
        print(f"{'trailwatch scan s3:// (reference)':<34} {scan_s:7.2f}s {events / scan_s:9.0f} {'':>8} {'':>12} {'':>13}")
        for r in results:
            name = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}, state in {'DynamoDB' if r['backend'] == 'dynamodb' else 'memory'}"
            speed = f"{base / r['drain']:.2f}x" if base and r["backend"] == "dynamodb" else ""
            print(
                f"{name:<34} {r['drain']:7.2f}s {events / r['drain']:9.0f} {speed:>8} "
                f"{r['cpu']:8.2f} cores {r['moto']:9.2f} cores  {r['ids']}"
            )

        for r in results:
            if r["warnings"]:
                top = "; ".join(f"{n}x {m[:120]}" for m, n in r["warnings"].most_common(3))
                print(f"  {r['workers']} x {r['backend']}: {sum(r['warnings'].values())} warnings or errors logged ({top})")
            if r["lines"] != scan_lines:
                print(
                    f"  {r['workers']} x {r['backend']}: {r['lines']} alerts written for the scan's {scan_lines}"
                    " (a file retried from its start delivers its alerts again: at least once, same ids)"
                )
        print()
        print("DynamoDB state usage (the workers' log lines, summed; units by item size, as DynamoDB bills):")
        print(
            f"{'workers':<8} {'reads':>8} {'writes':>8} {'req/1k events':>14} {'read units':>11} {'write units':>12}"
            f" {'$ per 1M events':>16} {'by item size':>13}"
        )
        for r in results:
            u = r["usage"]
            if r["backend"] != "dynamodb":
                continue
            requests = u["reads"] + u["writes"]
            dollars = u["write_units"] * WRITE_UNIT_PRICE + u["read_units"] * READ_UNIT_PRICE
            # DynamoDB bills every request at least one unit, and a write one unit
            # per KB of its item: each item over 1 KB was written at least once at
            # its final size.
            extra = sum(k[3] for k in r["profile"].values())
            sized = (u["writes"] + extra) * WRITE_UNIT_PRICE + u["reads"] * READ_UNIT_PRICE
            print(
                f"{r['workers']:<8} {u['reads']:8.0f} {u['writes']:8.0f} {requests / events * 1000:14.2f}"
                f" {u['read_units']:11.1f} {u['write_units']:12.1f} {dollars / events * 1e6:16.4f}"
                f" {sized / events * 1e6:13.4f}"
            )
        last = next((r for r in reversed(results) if r["table"]), None)
        if last:
            print()
            print(f"items in the table after {last['workers']} workers (DynamoDB bills writes per KB of item):")
            names = {"w": "threshold windows", "c": "claims", "j": "join", "o": "objects done"}
            for kind, (count, big, largest, _) in sorted(last["profile"].items()):
                print(
                    f"  {names.get(kind, kind):<18} {count:6d} items, {big:5d} over 1 KB, largest {largest / 1024:.1f} KB"
                    f" ({math.ceil(largest / 1024)} write units per update)"
                )
    finally:
        stop_moto(moto)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
