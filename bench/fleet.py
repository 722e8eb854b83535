#!/usr/bin/env python3
"""Fleet-start benchmark: many `infisical-init run` processes at once against a rate-limited server.

A rollout restarts many containers at the same moment, and Infisical rate
limits per address. This script starts the project's test server on
127.0.0.1 with ``--rate-limit N`` (a sliding 60-second window over all /api/
requests), then starts ``--processes`` copies of ``infisical-init run -- sh -c
'date +%s.%N > MARKER'`` at once. Each needs one login and one listing, so
with 100 processes and a limit of 100 the last requests can only be admitted
about 60 s after the first ones.

It records, per mode (without and with ``--retry-after-header``):

* the time from the first spawn to the last child start (from the marker
  files), and the median and 90th percentile,
* the requests and 429 responses in the server's request log,
* the 429s each process was given (its "failed (returned 429)" log lines),
* the processes that failed, with their exit codes.

It compares them with the targets: no failure, the last child starts within
1.25 x the time the limit allows, and at most one 429 per process on average.
It only reports; it never fails because a target is missed.

Usage::

    cargo build --release --target x86_64-unknown-linux-musl
    python3 bench/fleet.py [--processes 100] [--rate-limit 100] [--mode both] [--json FILE]

Standard library only. Every server and process it starts is on 127.0.0.1
and is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
SERVER = REPOSITORY / "tests" / "server" / "infisical_test_server.py"
BINARIES = (
    REPOSITORY / "target" / "x86_64-unknown-linux-musl" / "release" / "infisical-init",
    REPOSITORY / "target" / "release" / "infisical-init",
)

CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "test-client-secret-7f3a9c"
PROJECT_ID = "ea08c28d-5ca9-4510-a157-d2ec0639956a"
WINDOW_SECONDS = 60.0
REQUESTS_PER_PROCESS = 2  # one login, one listing
TARGET_FACTOR = 1.25
# Longer than the binary's default --timeout (120 s), so a process gives up on its own first.
PROCESS_LIMIT_SECONDS = 180.0


@dataclass
class FleetResult:
    mode: str
    processes: int
    rate_limit: int
    allowed_seconds: float
    last_start_seconds: float | None
    median_start_seconds: float | None
    p90_start_seconds: float | None
    started_children: int
    failures: dict[str, int] = field(default_factory=dict)  # pid index -> exit code
    requests: int = 0
    responses_429: int = 0
    logins: int = 0
    listings: int = 0
    max_429_per_process: int = 0
    mean_429_per_process: float = 0.0
    retry_waits: list[float] = field(default_factory=list)
    targets: dict[str, bool] = field(default_factory=dict)


class TestServer:
    """The project's test server in a child process, stopped by its pid."""

    def __init__(self, arguments: list[str]):
        command = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0", *arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"unexpected first line from the test server: {line!r}")
        self.url = line.removeprefix("listening on ")

    def requests(self) -> list[dict[str, Any]]:
        # An empty ProxyHandler ignores any *_proxy variables, so the request stays on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/__test/requests", timeout=30) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def find_binary(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for candidate in BINARIES:
        if candidate.is_file():
            return candidate
    raise SystemExit("no release binary found: run cargo build --release --target x86_64-unknown-linux-musl, or pass --binary")


def process_environment(url: str) -> dict[str, str]:
    """Return a clean environment: PATH and the settings for the local server, no proxy variables."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "INFISICAL_DOMAIN": url,
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID": CLIENT_ID,
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET": CLIENT_SECRET,
        "INFISICAL_PROJECT_ID": PROJECT_ID,
    }


def retry_waits(log: str) -> list[float]:
    """Return the waits of the 429 retries that a process logged ("... (returned 429); retrying in X s")."""
    waits = []
    for line in log.splitlines():
        if "(returned 429)" in line and "retrying in " in line:
            waits.append(float(line.split("retrying in ")[1].split(" ")[0]))
    return waits


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_fleet(binary: Path, processes: int, rate_limit: int, retry_after_header: bool) -> FleetResult:
    mode = "with --retry-after-header" if retry_after_header else "without --retry-after-header"
    server_arguments = ["--rate-limit", str(rate_limit)] + (["--retry-after-header"] if retry_after_header else [])
    server = TestServer(server_arguments)
    scratch = Path(tempfile.mkdtemp(prefix="infisical-init-fleet-"))
    children: list[tuple[subprocess.Popen, Path, Path]] = []
    environment = process_environment(server.url)
    try:
        started = time.time()
        for index in range(processes):
            marker = scratch / f"started-{index:03d}"
            log = scratch / f"stderr-{index:03d}"
            with open(log, "wb") as stderr:
                child = subprocess.Popen(
                    [str(binary), "run", "--", "sh", "-c", 'date +%s.%N > "$0"', str(marker)],
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            children.append((child, marker, log))

        failures: dict[str, int] = {}
        for index, (child, _, _) in enumerate(children):
            remaining = max(1.0, started + PROCESS_LIMIT_SECONDS - time.time())
            try:
                status = child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                child.kill()
                status = child.wait()
            if status != 0:
                failures[str(index)] = status

        starts = [float(marker.read_text().strip()) - started for _, marker, _ in children if marker.exists()]
        waits_per_process = [retry_waits(log.read_text(errors="replace")) for _, _, log in children]
        log_entries = [entry for entry in server.requests() if entry["path"].startswith("/api/")]
    finally:
        for child, _, _ in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        server.stop()

    allowed = WINDOW_SECONDS * max(0, (processes * REQUESTS_PER_PROCESS - 1) // rate_limit)
    counts_429 = [len(waits) for waits in waits_per_process]
    result = FleetResult(
        mode=mode,
        processes=processes,
        rate_limit=rate_limit,
        allowed_seconds=allowed,
        last_start_seconds=max(starts) if starts else None,
        median_start_seconds=statistics.median(starts) if starts else None,
        p90_start_seconds=percentile(starts, 0.9) if starts else None,
        started_children=len(starts),
        failures=failures,
        requests=len(log_entries),
        responses_429=sum(1 for entry in log_entries if entry["status"] == 429),
        logins=sum(1 for entry in log_entries if entry["path"].endswith("/universal-auth/login") and entry["status"] == 200),
        listings=sum(1 for entry in log_entries if entry["path"] == "/api/v4/secrets" and entry["status"] == 200),
        max_429_per_process=max(counts_429, default=0),
        mean_429_per_process=statistics.mean(counts_429) if counts_429 else 0.0,
        retry_waits=sorted(wait for waits in waits_per_process for wait in waits),
    )
    result.targets = {
        "no process failed": not failures and result.started_children == processes,
        f"last start within {TARGET_FACTOR} x {allowed:.0f} s": (
            result.last_start_seconds is not None and result.last_start_seconds <= TARGET_FACTOR * max(allowed, 1.0)
        ),
        "at most one 429 per process on average": result.responses_429 <= processes,
    }
    return result


def report(result: FleetResult) -> str:
    def seconds(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} s"

    waits = result.retry_waits
    wait_text = f"{min(waits):.1f} to {max(waits):.1f} s" if waits else "none"
    lines = [
        f"## {result.processes} processes, --rate-limit {result.rate_limit}, {result.mode}",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| children started | {result.started_children} of {result.processes} |",
        f"| failed processes | {len(result.failures)} {result.failures or ''} |",
        f"| last child start | {seconds(result.last_start_seconds)} (limit allows {result.allowed_seconds:.0f} s) |",
        f"| median / 90th percentile start | {seconds(result.median_start_seconds)} / {seconds(result.p90_start_seconds)} |",
        f"| /api/ requests | {result.requests} ({result.logins} logins and {result.listings} listings answered 200) |",
        f"| 429 responses | {result.responses_429} |",
        f"| 429s per process | mean {result.mean_429_per_process:.2f}, max {result.max_429_per_process} |",
        f"| logged 429 waits | {wait_text} |",
        "",
    ]
    lines += [f"- {'met' if met else 'MISSED'}: {target}" for target, met in result.targets.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Start many infisical-init processes against a rate-limited test server.")
    parser.add_argument("--processes", type=int, default=100, help="processes started at once (default 100)")
    parser.add_argument("--rate-limit", type=int, default=100, help="server's requests per 60 s window (default 100)")
    parser.add_argument("--mode", choices=("without", "with", "both"), default="both",
                        help="run without --retry-after-header, with it, or both (default)")
    parser.add_argument("--binary", help="infisical-init to run (default: the musl or native release build)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    options = parser.parse_args(argv)

    binary = find_binary(options.binary)
    modes = {"without": [False], "with": [True], "both": [False, True]}[options.mode]
    print(f"binary {binary}; {os.cpu_count()} CPUs; {platform.platform()}\n", flush=True)
    results = []
    for retry_after_header in modes:
        result = run_fleet(binary, options.processes, options.rate_limit, retry_after_header)
        results.append(result)
        print(report(result), flush=True)
    if options.json:
        options.json.write_text(json.dumps([asdict(result) for result in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
