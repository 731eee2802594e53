"""Helpers shared by the scripts that drive the AWS emulator (demo, stack test)."""

import socket
import time


def free_port():
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, pred, fail, timeout=60.0, every=0.2):
    """Polls `pred` until it holds; calls `fail(message)` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(every)
    fail(f"timed out waiting for {what}")


def metric_sum(cw, name, dimensions=()):
    """Sum of a TrailWatch metric over the last hour, as CloudWatch reports it."""
    now = time.time()
    points = cw.get_metric_statistics(
        Namespace="TrailWatch",
        MetricName=name,
        Dimensions=list(dimensions),
        StartTime=now - 3600,
        EndTime=now + 60,
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points)
