#!/usr/bin/env python3
"""Start-up benchmark: infisical-init against the entrypoints users write instead.

bench/run builds the binary, creates the SDK's virtual environment, starts one
test server per secret count and then calls this script, which

1. checks that every way of starting delivers the same secrets to the child,
2. reads the server's request log after one start of each way (requests per
   start, connection reuse), also against a server without the v4 routes,
3. times whole processes, start to the child's exit, in interleaved rounds:
   every round runs every (way, secret count) pair once, in a shuffled order,
4. measures peak resident memory with /usr/bin/time -f %M, also interleaved,

and writes the results as JSON and as a Markdown report. Standard library only.
It exits 0 whether or not the numbers meet their targets.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SDK_ENTRYPOINT = BENCH_DIR / "sdk_entrypoint.py"
CURL_ENTRYPOINT = BENCH_DIR / "curl_entrypoint.sh"

CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "test-client-secret-7f3a9c"
PROJECT_ID = "ea08c28d-5ca9-4510-a157-d2ec0639956a"
ENVIRONMENT = "dev"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
CHILD = ["/bin/true"]
MIB = 1024 * 1024

# The query infisical-init sends for a listing, so that the server's own time
# is measured for the same work.
LIST_QUERY = {
    "projectId": PROJECT_ID,
    "environment": ENVIRONMENT,
    "secretPath": "/",
    "recursive": "false",
    "expandSecretReferences": "true",
    "include_imports": "true",
    "includeImports": "true",
}

# Targets that the report checks. They are reported, never enforced.
TARGET_SPEEDUP_SDK = 20.0
TARGET_SPEEDUP_CURL = 5.0
TARGET_GROWTH_MS = 20.0
TARGET_RSS_SMALL_MIB = 8.0
TARGET_RSS_MARGIN_MIB = 8.0

INIT = "infisical-init"
SDK = "python-sdk"
CURL = "curl-jq"
DIRECT = "direct"


@dataclass
class Way:
    """One way of starting the child: a command prefix and whether it talks to the server.

    The way that does not talk to the server starts the child with the
    server's secrets already in its environment: the floor for that size.
    """

    name: str
    prefix: list[str]
    uses_server: bool

    def argv(self, child: list[str]) -> list[str]:
        return [*self.prefix, *child]


@dataclass
class Server:
    """A running test server and what the benchmark learned from it."""

    secrets: int
    url: str
    host: str = ""
    port: int = 0
    response_bytes: int = 0
    expected: dict[str, str] = field(default_factory=dict)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", required=True, help="path of the infisical-init binary")
    parser.add_argument("--python", help="Python interpreter of the virtual environment with infisicalsdk")
    parser.add_argument("--sdk-unavailable", default="", help="why the SDK way is left out, for the report")
    parser.add_argument("--server", action="append", default=[], metavar="N=URL",
                        help="test server serving N secrets in dev / (repeatable)")
    parser.add_argument("--no-v4-server", metavar="URL", help="test server started with --no-v4, for the request log")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--rss-runs", type=int, default=5, help="/usr/bin/time runs per pair (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the round order")
    parser.add_argument("--revision", default="unknown", help="source revision, for the report")
    parser.add_argument("--note", action="append", default=[], help="line added to the report (repeatable)")
    parser.add_argument("--json", type=Path, required=True, help="file for the results as JSON")
    parser.add_argument("--report", type=Path, required=True, help="file for the Markdown report")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------
# Servers


def parse_server(spec: str) -> Server:
    count, _, url = spec.partition("=")
    server = Server(secrets=int(count), url=url.rstrip("/"))
    parts = urllib.parse.urlsplit(server.url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.port is None:
        sys.exit(f"startup_bench: server URL {url!r} is not http://LOOPBACK:PORT; the benchmark talks to loopback only")
    server.host, server.port = parts.hostname, parts.port
    return server


def http_request(server: Server, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def login(server: Server) -> str:
    body = json.dumps({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}).encode()
    status, reply = http_request(server, "POST", "/api/v1/auth/universal-auth/login", body,
                                 {"Content-Type": "application/json"})
    if status != 200:
        sys.exit(f"startup_bench: login to {server.url} failed with status {status}")
    return json.loads(reply)["accessToken"]


def list_secrets(server: Server, token: str) -> bytes:
    path = "/api/v4/secrets?" + urllib.parse.urlencode(LIST_QUERY)
    status, reply = http_request(server, "GET", path, headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        sys.exit(f"startup_bench: listing on {server.url} failed with status {status}")
    return reply


def inspect_server(server: Server) -> None:
    """Record the listing's size and the secrets every way must deliver."""
    body = list_secrets(server, login(server))
    server.response_bytes = len(body)
    listing = json.loads(body)
    expected: dict[str, str] = {}
    for imported in listing.get("imports", []):
        expected.update((secret["secretKey"], secret["secretValue"]) for secret in imported["secrets"])
    expected.update((secret["secretKey"], secret["secretValue"]) for secret in listing["secrets"])
    server.expected = expected


def time_server(server: Server, token: str) -> tuple[int, int]:
    """Time one login and one listing, each on a new connection; return nanoseconds."""
    start = time.perf_counter_ns()
    login(server)
    middle = time.perf_counter_ns()
    list_secrets(server, token)
    end = time.perf_counter_ns()
    return middle - start, end - middle


def request_log(server: Server) -> list[dict[str, Any]]:
    status, reply = http_request(server, "GET", "/__test/requests")
    if status != 200:
        sys.exit(f"startup_bench: GET /__test/requests on {server.url} failed with status {status}")
    return json.loads(reply)


def reset_request_log(server: Server) -> None:
    status, _ = http_request(server, "POST", "/__test/reset")
    if status != 200:
        sys.exit(f"startup_bench: POST /__test/reset on {server.url} failed with status {status}")


# ---------------------------------------------------------------------------
# Processes


def base_environment() -> dict[str, str]:
    """Return this process's environment without Infisical settings or proxies."""
    dropped_prefixes = ("INFISICAL_",)
    dropped = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(dropped_prefixes) and name.upper() not in dropped
    }


def environment_for(way: Way, server: Server) -> dict[str, str]:
    environment = base_environment()
    if not way.uses_server:
        environment.update(server.expected)
    else:
        environment.update(
            INFISICAL_DOMAIN=server.url,
            INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=CLIENT_ID,
            INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=CLIENT_SECRET,
            INFISICAL_PROJECT_ID=PROJECT_ID,
            INFISICAL_ENVIRONMENT=ENVIRONMENT,
        )
    return environment


def spawn_timed(argv: list[str], environment: dict[str, str]) -> tuple[int, int, int]:
    """Run argv with its output discarded.

    Return the wall time and the CPU time (user and system, the process and
    the children it waited for) in nanoseconds, and the exit code.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2)]
        start = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, environment, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter_ns() - start
    finally:
        os.close(devnull)
    cpu = round((usage.ru_utime + usage.ru_stime) * 1e9)
    return elapsed, cpu, os.waitstatus_to_exitcode(status)


def peak_rss_kib(argv: list[str], environment: dict[str, str]) -> tuple[int, int]:
    """Run argv under /usr/bin/time -f %M; return (peak RSS in KiB, exit code)."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-rss-") as output:
        completed = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", output.name, *argv], env=environment,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, check=False)
        lines = output.read().split()
    return int(lines[-1]), completed.returncode


def child_secrets(way: Way, server: Server) -> tuple[dict[str, str] | None, str]:
    """Start the child `env -0` through `way`; return the GEN_ variables it saw, or the failure."""
    completed = subprocess.run(way.argv(["/usr/bin/env", "-0"]), env=environment_for(way, server),
                               stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if completed.returncode != 0:
        lines = completed.stderr.decode(errors="replace").strip().splitlines()
        # Drop infisical-init's "[pid]" so that reports of two runs compare.
        message = re.sub(r"^infisical-init: \[\d+\] ", "infisical-init: ", lines[-1]) if lines else "no message"
        return None, f"exit {completed.returncode}: {message}"
    variables = {}
    for entry in completed.stdout.split(b"\0"):
        name, _, value = entry.decode(errors="replace").partition("=")
        if name.startswith("GEN_") or name in server.expected:
            variables[name] = value
    return variables, ""


# ---------------------------------------------------------------------------
# Measurement passes


def verify(ways: list[Way], servers: list[Server]) -> dict[str, dict[int, str]]:
    results: dict[str, dict[int, str]] = {}
    for way in ways:
        if not way.uses_server:
            continue
        results[way.name] = {}
        for server in servers:
            variables, failure = child_secrets(way, server)
            if variables is None:
                outcome = f"failed ({failure})"
            elif variables == server.expected:
                outcome = f"ok ({len(variables)} secrets, values identical)"
            else:
                wrong = sum(1 for key, value in server.expected.items() if variables.get(key) != value)
                outcome = f"MISMATCH ({wrong} of {len(server.expected)} secrets missing or different)"
            results[way.name][server.secrets] = outcome
            print(f"startup_bench: verify {way.name} with {server.secrets} secrets: {outcome}", file=sys.stderr)
    return results


def summarize_requests(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": [f"{entry['method']} {entry['path']} {entry['status']}" for entry in entries],
        "count": len(entries),
        "logins": sum(1 for entry in entries if entry["path"].endswith("/universal-auth/login")),
        "listings": sum(1 for entry in entries if entry["path"] in ("/api/v4/secrets", "/api/v3/secrets/raw")),
        "connections": len({entry["connection"] for entry in entries}),
    }


def count_requests(ways: list[Way], server: Server, extra_init_arguments: list[str] | None = None) -> dict[str, Any]:
    results = {}
    for way in ways:
        if not way.uses_server:
            continue
        argv = way.argv(CHILD)
        name = way.name
        if extra_init_arguments and way.name == INIT:
            argv = [*way.prefix[:2], *extra_init_arguments, *way.prefix[2:], *CHILD]
            name = f"{INIT} {' '.join(extra_init_arguments)}"
        reset_request_log(server)
        _, _, code = spawn_timed(argv, environment_for(way, server))
        summary = summarize_requests(request_log(server))
        summary["exit"] = code
        results[name] = summary
    return results


def timing_rounds(ways: list[Way], servers: list[Server], rounds: int, warmup: int,
                  order: random.Random) -> dict[str, Any]:
    pairs = [(way, server) for server in servers for way in ways]
    wall: dict[str, list[int]] = {}
    cpu: dict[str, list[int]] = {}
    failures: dict[str, int] = {}
    server_time: dict[int, dict[str, list[int]]] = {server.secrets: {"login": [], "list": []} for server in servers}
    tokens = {server.secrets: login(server) for server in servers}
    for round_number in range(warmup + rounds):
        recorded = round_number >= warmup
        order.shuffle(pairs)
        for way, server in pairs:
            elapsed, used, code = spawn_timed(way.argv(CHILD), environment_for(way, server))
            key = f"{way.name}@{server.secrets}"
            if code != 0:
                failures[key] = code
            elif recorded:
                wall.setdefault(key, []).append(elapsed)
                cpu.setdefault(key, []).append(used)
        for server in servers:
            login_ns, list_ns = time_server(server, tokens[server.secrets])
            if recorded:
                server_time[server.secrets]["login"].append(login_ns)
                server_time[server.secrets]["list"].append(list_ns)
        label = f"round {round_number + 1 - warmup} of {rounds}" if recorded else "warm-up round"
        print(f"startup_bench: {label} done", file=sys.stderr)
    return {"wall_ns": wall, "cpu_ns": cpu, "failures": failures, "server_ns": server_time}


def rss_rounds(ways: list[Way], servers: list[Server], runs: int, order: random.Random) -> dict[str, Any]:
    pairs = [(way, server) for server in servers for way in ways]
    peaks: dict[str, list[int]] = {}
    failures: dict[str, int] = {}
    for _ in range(runs):
        order.shuffle(pairs)
        for way, server in pairs:
            peak, code = peak_rss_kib(way.argv(CHILD), environment_for(way, server))
            key = f"{way.name}@{server.secrets}"
            if code != 0:
                failures[key] = code
            else:
                peaks.setdefault(key, []).append(peak)
    return {"peak_kib": peaks, "failures": failures}


# ---------------------------------------------------------------------------
# Report


def median_ms(samples: list[int]) -> float:
    return statistics.median(samples) / 1e6


def quartiles_ms(samples: list[int]) -> tuple[float, float]:
    if len(samples) < 2:
        return samples[0] / 1e6, samples[0] / 1e6
    low, _, high = statistics.quantiles(samples, n=4)
    return low / 1e6, high / 1e6


def machine_description() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
    }


def tool_versions(python: str | None) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            completed = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as error:
            return f"unavailable ({error})"
        return (completed.stdout or completed.stderr).strip().splitlines()[0]

    versions = {
        "curl": " ".join(first_line(["curl", "--version"]).split()[:2]),
        "jq": first_line(["jq", "--version"]),
        "sh": os.path.realpath("/bin/sh"),
        "benchmark python": platform.python_version(),
    }
    if python:
        versions["infisicalsdk"] = first_line(
            [python, "-c", "import importlib.metadata as m, platform; "
             "print(m.version('infisicalsdk'), 'on Python', platform.python_version())"])
    return versions


class Report:
    """The Markdown report of one run's measurements."""

    def __init__(self, results: dict[str, Any], ways: list[Way], servers: list[Server]):
        self.results = results
        self.ways = ways
        self.servers = servers
        self.lines: list[str] = []

    def wall(self, way: str, count: int, metric: str = "wall_ns") -> list[int] | None:
        key = f"{way}@{count}"
        if key in self.results["timing"]["failures"]:
            return None
        return self.results["timing"][metric].get(key)

    def time_text(self, way: str, count: int, metric: str) -> str:
        samples = self.wall(way, count, metric)
        if samples is None:
            code = self.results["timing"]["failures"].get(f"{way}@{count}")
            return f"failed (exit {code})" if code is not None else "n/a"
        low, high = quartiles_ms(samples)
        return f"{median_ms(samples):.1f} ({low:.1f}–{high:.1f})"

    def server_ms(self, count: int, route: str) -> float:
        return median_ms(self.results["timing"]["server_ns"][count][route])

    def rss_mib(self, way: str, count: int) -> float | None:
        samples = self.results["rss"]["peak_kib"].get(f"{way}@{count}")
        if not samples or f"{way}@{count}" in self.results["rss"]["failures"]:
            return None
        return statistics.median(samples) / 1024

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def build(self) -> str:
        self.header()
        self.timing_table("Wall time, start to the child's exit", "wall_ns")
        self.timing_table("CPU time, user and system, of the whole start with its child processes", "cpu_ns")
        self.ratio_table()
        self.rss_table()
        self.request_tables()
        self.verification_table()
        self.target_table()
        return "\n".join(self.lines) + "\n"

    def header(self) -> None:
        meta = self.results["meta"]
        machine = meta["machine"]
        self.add("# Start-up benchmark results")
        self.add()
        self.add(f"- Revision: {meta['revision']}; binary {meta['binary']} ({meta['binary_bytes']:,} bytes)")
        self.add(f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, "
                 f"Linux {machine['kernel']}; load average {meta['load_before']} before, {meta['load_after']} after")
        self.add(f"- Runs: {meta['rounds']} interleaved rounds after {meta['warmup']} warm-up rounds; "
                 f"{meta['rss_runs']} /usr/bin/time runs per pair; child {' '.join(CHILD)}")
        self.add("- Tools: " + "; ".join(f"{name} {version}" for name, version in meta["tools"].items()))
        for note in meta["notes"]:
            self.add(f"- {note}")
        self.add()

    def timing_table(self, title: str, metric: str) -> None:
        self.add(f"## {title} (ms, median and interquartile range)")
        self.add()
        counts = [server.secrets for server in self.servers]
        self.add("| way | " + " | ".join(f"{count:,} secrets" for count in counts) + " |")
        self.add("| --- |" + " --- |" * len(counts))
        for way in self.ways:
            cells = [self.time_text(way.name, count, metric) for count in counts]
            self.add(f"| {way.name} | " + " | ".join(cells) + " |")
        if metric == "wall_ns":
            login = [f"{self.server_ms(count, 'login'):.1f}" for count in counts]
            listing = [f"{self.server_ms(count, 'list'):.1f}" for count in counts]
            self.add("| server: one login (the benchmark's own request) | " + " | ".join(login) + " |")
            self.add("| server: one listing (the benchmark's own request) | " + " | ".join(listing) + " |")
        self.add()

    def ratio_table(self) -> None:
        self.add("## infisical-init against the alternatives")
        self.add()
        self.add("Speed-up is the alternative's median divided by infisical-init's; the gap is their difference.")
        self.add()
        self.add("| secrets | way | speed-up, wall | gap, wall (ms) | speed-up, CPU | gap, CPU (ms) |")
        self.add("| --- | --- | --- | --- | --- | --- |")
        for server in self.servers:
            for way in (SDK, CURL):
                cells = []
                for metric in ("wall_ns", "cpu_ns"):
                    init, other = self.wall(INIT, server.secrets, metric), self.wall(way, server.secrets, metric)
                    if init is None or other is None:
                        cells += ["n/a", "n/a"]
                        continue
                    cells.append(f"{median_ms(other) / median_ms(init):.1f}×")
                    cells.append(f"{median_ms(other) - median_ms(init):.1f}")
                self.add(f"| {server.secrets:,} | {way} | " + " | ".join(cells) + " |")
        self.add()

    def rss_table(self) -> None:
        self.add("## Peak resident memory (MiB, median of /usr/bin/time -f %M)")
        self.add()
        counts = [server.secrets for server in self.servers]
        self.add("| way | " + " | ".join(f"{count:,} secrets" for count in counts) + " |")
        self.add("| --- |" + " --- |" * len(counts))
        for way in self.ways:
            cells = []
            for count in counts:
                peak = self.rss_mib(way.name, count)
                cells.append("failed" if peak is None else f"{peak:.1f}")
            self.add(f"| {way.name} | " + " | ".join(cells) + " |")
        sizes = [f"{server.response_bytes / MIB:.2f}" for server in self.servers]
        self.add("| listing response size | " + " | ".join(sizes) + " |")
        self.add()

    def request_tables(self) -> None:
        self.add("## Requests per start (server request log)")
        self.add()
        self.add("| server | way | requests | logins | listings | TCP connections | exit |")
        self.add("| --- | --- | --- | --- | --- | --- | --- |")
        for label, table in self.results["requests"].items():
            for way, summary in table.items():
                self.add(f"| {label} | {way} | {summary['count']}: {', '.join(summary['requests'])} | "
                         f"{summary['logins']} | {summary['listings']} | {summary['connections']} | "
                         f"{summary['exit']} |")
        self.add()

    def verification_table(self) -> None:
        self.add("## Secrets the child received (`env -0` as the child)")
        self.add()
        self.add("| way | " + " | ".join(f"{server.secrets:,} secrets" for server in self.servers) + " |")
        self.add("| --- |" + " --- |" * len(self.servers))
        for way, outcomes in self.results["verification"].items():
            self.add(f"| {way} | " + " | ".join(outcomes[server.secrets] for server in self.servers) + " |")
        self.add()

    def target_rows(self) -> list[tuple[str, str, bool | None]]:
        rows: list[tuple[str, str, bool | None]] = []
        smallest, largest = self.servers[0], self.servers[-1]

        def speedup(way: str, count: int) -> float | None:
            init, other = self.wall(INIT, count), self.wall(way, count)
            if init is None or other is None:
                return None
            return median_ms(other) / median_ms(init)

        def gap(way: str, count: int) -> float | None:
            init, other = self.wall(INIT, count), self.wall(way, count)
            if init is None or other is None:
                return None
            return median_ms(other) - median_ms(init)

        def missing(way: str, count: int) -> tuple[str, bool | None]:
            """Describe why a comparison has no number: a failed infisical-init misses the target."""
            code = self.results["timing"]["failures"].get(f"{INIT}@{count}")
            if code is not None:
                return f"infisical-init failed (exit {code})", False
            return f"no measurement of {way}", None

        for way, target in ((SDK, TARGET_SPEEDUP_SDK), (CURL, TARGET_SPEEDUP_CURL)):
            value = speedup(way, smallest.secrets)
            if value is None:
                rows.append((f"{target:.0f}× faster than {way} at {smallest.secrets:,} secrets",
                             *missing(way, smallest.secrets)))
            else:
                rows.append((f"{target:.0f}× faster than {way} at {smallest.secrets:,} secrets", f"{value:.1f}×",
                             value >= target))
            small_gap, large_gap = gap(way, smallest.secrets), gap(way, largest.secrets)
            if small_gap is None or large_gap is None:
                failed_count = largest.secrets if large_gap is None else smallest.secrets
                rows.append((f"gap to {way} not shrinking at {largest.secrets:,}", *missing(way, failed_count)))
            else:
                large_ratio = speedup(way, largest.secrets)
                rows.append((f"gap to {way} not shrinking at {largest.secrets:,}",
                             f"{small_gap:.1f} ms → {large_gap:.1f} ms ({large_ratio:.1f}×)",
                             large_gap >= small_gap))

        small, large = self.wall(INIT, smallest.secrets), self.wall(INIT, largest.secrets)
        if small is None or large is None:
            failed_count = largest.secrets if large is None else smallest.secrets
            rows.append((f"{largest.secrets:,} secrets add at most {TARGET_GROWTH_MS:.0f} ms",
                         *missing(INIT, failed_count)))
        else:
            growth = median_ms(large) - median_ms(small)
            server_growth = self.server_ms(largest.secrets, "list") - self.server_ms(smallest.secrets, "list")
            client_growth = growth - server_growth
            cpu_growth = median_ms(self.wall(INIT, largest.secrets, "cpu_ns") or [0]) - median_ms(
                self.wall(INIT, smallest.secrets, "cpu_ns") or [0])
            rows.append((f"{largest.secrets:,} secrets add at most {TARGET_GROWTH_MS:.0f} ms (client's share)",
                         f"{client_growth:.1f} ms ({growth:.1f} ms in all, of which the server's listing "
                         f"{server_growth:.1f} ms; CPU time grows {cpu_growth:.1f} ms)",
                         client_growth <= TARGET_GROWTH_MS))

        peak = self.rss_mib(INIT, smallest.secrets)
        rows.append((f"peak RSS at most {TARGET_RSS_SMALL_MIB:.0f} MiB at {smallest.secrets:,} secrets",
                     "infisical-init failed" if peak is None else f"{peak:.1f} MiB",
                     peak is not None and peak <= TARGET_RSS_SMALL_MIB))
        peak = self.rss_mib(INIT, largest.secrets)
        limit = largest.response_bytes / MIB + TARGET_RSS_MARGIN_MIB
        rows.append((f"peak RSS at most response + {TARGET_RSS_MARGIN_MIB:.0f} MiB at {largest.secrets:,} secrets",
                     "infisical-init failed" if peak is None else f"{peak:.1f} MiB (limit {limit:.1f} MiB)",
                     peak is not None and peak <= limit))

        v4 = self.results["requests"]
        init_runs = [table[INIT] for label, table in v4.items() if label.endswith("secrets") and INIT in table]
        reused = all(run["connections"] == 1 for run in init_runs)
        exact = all(run["logins"] == 1 and run["listings"] == 1 and run["count"] == 2 for run in init_runs)
        rows.append(("one login and one listing per start (v4 server)",
                     ", ".join(str(run["count"]) for run in init_runs) + " requests", exact))
        rows.append(("login and listing share one connection",
                     ", ".join(str(run["connections"]) for run in init_runs) + " connections", reused))
        fallback = v4.get("without v4", {})
        one_path, two_paths = fallback.get(INIT), fallback.get(f"{INIT} --path / --path /")
        if one_path and two_paths:
            rows.append(("without v4: one extra request, once (one path: 3, two paths: 4)",
                         f"{one_path['count']} and {two_paths['count']} requests",
                         one_path["count"] == 3 and two_paths["count"] == 4))
        return rows

    def target_table(self) -> None:
        self.add("## Targets")
        self.add()
        self.add("| target | measured | met |")
        self.add("| --- | --- | --- |")
        for target, measured, met in self.target_rows():
            verdict = "unknown"
            if met is not None:
                verdict = "met" if met else "**missed**"
            self.add(f"| {target} | {measured} | {verdict} |")
        self.add()


# ---------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    servers = sorted((parse_server(spec) for spec in args.server), key=lambda server: server.secrets)
    if not servers:
        sys.exit("startup_bench: give at least one --server N=URL")
    for server in servers:
        inspect_server(server)

    sh = shutil.which("sh") or "/bin/sh"
    ways = [Way(DIRECT, [], False), Way(INIT, [os.path.abspath(args.init), "run", "--"], True)]
    if args.python:
        ways.append(Way(SDK, [args.python, str(SDK_ENTRYPOINT)], True))
    ways.append(Way(CURL, [sh, str(CURL_ENTRYPOINT)], True))

    notes = list(args.note)
    if not args.python:
        notes.append(f"The Python SDK way is left out: {args.sdk_unavailable or 'no --python given'}")
    results: dict[str, Any] = {
        "meta": {
            "revision": args.revision,
            "binary": args.init,
            "binary_bytes": os.stat(args.init).st_size,
            "machine": machine_description(),
            "tools": tool_versions(args.python),
            "rounds": args.rounds,
            "warmup": args.warmup,
            "rss_runs": args.rss_runs,
            "notes": notes,
            "load_before": " ".join(f"{load:.2f}" for load in os.getloadavg()),
            "response_bytes": {server.secrets: server.response_bytes for server in servers},
        },
    }
    results["verification"] = verify(ways, servers)

    results["requests"] = {f"v4, {server.secrets:,} secrets": count_requests(ways, server) for server in servers}
    if args.no_v4_server:
        no_v4 = parse_server(f"0={args.no_v4_server}")
        table = count_requests(ways, no_v4)
        table.update(count_requests([way for way in ways if way.name == INIT], no_v4, ["--path", "/", "--path", "/"]))
        results["requests"]["without v4"] = table

    order = random.Random(args.seed)
    results["timing"] = timing_rounds(ways, servers, args.rounds, args.warmup, order)
    results["rss"] = rss_rounds(ways, servers, args.rss_runs, order)
    results["meta"]["load_after"] = " ".join(f"{load:.2f}" for load in os.getloadavg())

    args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    report = Report(results, ways, servers).build()
    args.report.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
