"""The client side of the API benchmark: the gunicorn servers it starts and stops, a bounded load
generator, a timed batch call, a streamed download, and the server workers' memory read from
/proc while a stream runs. Standard library only."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # only loopback, ever
WORKERS = 2
# gunicorn's default of 30 s kills a sync worker still streaming; both servers get the same.
WORKER_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- servers --------------------------------------------------------------------------------------


@dataclass
class Server:
    """One gunicorn master with its sync workers, started by this process in its own process
    group, so that stopping it stops exactly what was started."""

    name: str
    app: str  # the WSGI target, e.g. "app:create_app()"
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(WORKERS),
            "-k",
            "sync",
            "-b",
            f"{HOST}:{self.port}",
            "--timeout",
            str(WORKER_TIMEOUT),
            self.app,
        ]

    def start(self, cwd: Path, health_path: str, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(
                    f"http://{HOST}:{self.port}{health_path}", timeout=5
                ) as answer:
                    if answer.status == 200 and len(self.worker_pids()) == WORKERS:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.name} did not answer within {timeout:.0f} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        """The master's children: its sync workers."""
        if self.process is None:
            return []
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(child) for child in text.split()]

    def stop(self) -> None:
        """SIGTERM to the server's own process group (gunicorn stops its workers gracefully),
        SIGKILL to it after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


# --- requests -------------------------------------------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    timeout: float = 120,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    @staticmethod
    def merge(results: Sequence[LoadResult]) -> LoadResult:
        return LoadResult(
            sum(r.requests for r in results),
            sum(r.errors for r in results),
            sum(r.seconds for r in results),
            [latency for r in results for latency in r.latencies_ms],
        )


def load(
    port: int,
    paths: Sequence[str],
    headers: dict[str, str],
    concurrency: int,
    max_seconds: float,
) -> LoadResult:
    """Every path GET once, by ``concurrency`` threads each with its own ``http.client``
    connection (reopened when the server closes it: gunicorn's sync workers close after every
    response), stopping early after ``max_seconds``. Latency is from sending the request to the
    last byte of the answer."""
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    started = time.perf_counter()
    deadline = started + max_seconds

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        mine = latencies[slot]
        while True:
            index = next(counter)
            if index >= len(paths) or time.perf_counter() > deadline:
                break
            begin = time.perf_counter()
            try:
                connection.request("GET", paths[index], headers=headers)
                answer = connection.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                ok = False
            mine.append((time.perf_counter() - begin) * 1000)
            if not ok:
                errors[slot] += 1
        connection.close()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    flat = [latency for slot in latencies for latency in slot]
    return LoadResult(len(flat), sum(errors), seconds, flat)


def timed_post(port: int, path: str, headers: dict[str, str], body: bytes) -> tuple[float, bytes]:
    """One POST on a fresh connection: milliseconds to the last byte, and the answer."""
    begin = time.perf_counter()
    status, answer = request(port, "POST", path, headers, body)
    elapsed = (time.perf_counter() - begin) * 1000
    if status != 200:
        raise SystemExit(f"POST {path} answered {status}: {answer[:300]!r}")
    return elapsed, answer


# --- the worker's memory, read from /proc while a stream runs -------------------------------------


def _status_kib(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class MemoryWatch:
    """VmRSS of each worker sampled every ``interval`` seconds; VmHWM reset before (writing 5 to
    /proc/PID/clear_refs) and read after. The worker that served the stream is the one whose CPU
    time grew the most."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids, self.interval = pids, interval
        self.samples: dict[int, list[tuple[float, int]]] = {pid: [] for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.reset = True
        for pid in pids:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                self.reset = False
        self.rss_before = {pid: _status_kib(pid, "VmRSS") for pid in pids}
        self.ticks_before = {pid: _cpu_ticks(pid) for pid in pids}
        self.started = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            moment = time.perf_counter() - self.started
            for pid in self.pids:
                self.samples[pid].append((moment, _status_kib(pid, "VmRSS")))

    def finish(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        grown = {pid: _cpu_ticks(pid) - self.ticks_before[pid] for pid in self.pids}
        pid = max(grown, key=lambda p: grown[p])
        samples = [kib for _, kib in self.samples[pid]] or [self.rss_before[pid]]

        def at(fraction: float) -> int:
            return samples[min(len(samples) - 1, int(fraction * len(samples)))]

        return {
            "pid": pid,
            "peak_reset": self.reset,
            "rss_before_kib": self.rss_before[pid],
            "peak_kib": max(_status_kib(pid, "VmHWM"), *samples),
            "rss_10_kib": at(0.1),
            "rss_50_kib": at(0.5),
            "rss_90_kib": at(0.9),
            "samples": len(samples),
            "cpu_seconds": grown[pid] / os.sysconf("SC_CLK_TCK"),
        }


# --- the audience, streamed -----------------------------------------------------------------------


def stream(
    port: int, path: str, headers: dict[str, str], pids: list[int], keep_lines: int = 200
) -> dict[str, Any]:
    """GET ``path`` and read the whole body as it comes, counting rows and hashing the bytes,
    while watching the server workers' memory."""
    watch = MemoryWatch(pids)
    digest = hashlib.sha256()
    rows = 0
    size = 0
    head = b""
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    begin, cpu_begin = time.perf_counter(), time.thread_time()
    first_byte = None
    try:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        if answer.status != 200:
            raise SystemExit(f"GET {path} answered {answer.status}: {answer.read(300)!r}")
        while True:
            # read(n) decodes as many chunks as fit in n bytes inside http.client.
            block = answer.read(1 << 16)
            if not block:
                break
            if first_byte is None:
                first_byte = time.perf_counter() - begin
            rows += block.count(b"\n")
            size += len(block)
            digest.update(block)
            if head.count(b"\n") < keep_lines:
                head += block
    finally:
        connection.close()
    seconds = time.perf_counter() - begin
    client_cpu = time.thread_time() - cpu_begin
    memory = watch.finish()
    return {
        "seconds": seconds,
        "first_byte_seconds": first_byte or seconds,
        "client_cpu_seconds": client_cpu,
        "rows": rows,
        "bytes": size,
        "sha256": digest.hexdigest(),
        "head": b"\n".join(head.split(b"\n")[:keep_lines]).decode(),
        "memory": memory,
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
