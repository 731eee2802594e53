"""Helpers shared by the scripts that drive the AWS emulator (demo, stack test,
image test, benchmarks)."""

import pathlib
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_moto(fail, log=subprocess.DEVNULL):
    """Starts moto_server (the project venv's) on a free loopback port, waits until
    it accepts connections, and returns (process, port, endpoint URL); `fail` is
    called with a message if it never does. Its output goes to `log`."""
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
    )
    wait_until("the AWS emulator", lambda: port_open(port), fail)
    return proc, port, f"http://127.0.0.1:{port}"


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
