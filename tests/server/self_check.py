#!/usr/bin/env python3
"""Check infisical_test_server.py against the recorded responses.

Run from anywhere: ``python3 tests/server/self_check.py``. It starts the server
several times on 127.0.0.1 with different options, sends requests with
http.client and exits non-zero with the list of failed checks.
"""

from __future__ import annotations

import atexit
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
SERVER = HERE / "infisical_test_server.py"
FIXTURES = HERE.parent / "fixtures" / "infisical-api"
PROJECT_ID = "ea08c28d-5ca9-4510-a157-d2ec0639956a"
OTHER_PROJECT_ID = "17bac717-3cdd-455e-ba20-96eb372056a3"
CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "test-client-secret-7f3a9c"

failures: list[str] = []


def check(condition: bool, description: str) -> None:
    print(("ok      " if condition else "FAILED  ") + description)
    if not condition:
        failures.append(description)


def fixture(case: str):
    return json.loads(next(FIXTURES.glob(case + "-*.json")).read_text(encoding="utf-8"))


def fixture_bytes(case: str) -> bytes:
    return next(FIXTURES.glob(case + "-*.json")).read_bytes()


class Server:
    """The server under test in a child process, stopped with SIGTERM."""

    def __init__(self, *arguments: str):
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), *arguments], stdout=subprocess.PIPE, text=True
        )
        atexit.register(self.process.kill)  # no-op once the process has exited
        line = self.process.stdout.readline().strip()
        assert line.startswith("listening on http://"), line
        self.host, _, port = line.removeprefix("listening on http://").rpartition(":")
        self.host = self.host.strip("[]")
        self.port = int(port)
        self.connection = self.connect()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(self, method, path, query=None, body=None, token=None, headers=None):
        """Send one request on the kept-alive connection; return (status, headers, body bytes)."""
        if query:
            path += "?" + urlencode(query)
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=body, headers=all_headers)
        response = self.connection.getresponse()
        return response.status, response.headers, response.read()

    def json(self, method, path, **arguments):
        status, _, body = self.request(method, path, **arguments)
        return status, json.loads(body)

    def login(self, secret=CLIENT_SECRET):
        return self.json("POST", "/api/v1/auth/universal-auth/login", body={"clientId": CLIENT_ID, "clientSecret": secret})

    def stop(self) -> int:
        self.connection.close()
        started = time.monotonic()
        self.process.terminate()
        code = self.process.wait(timeout=5)
        check(time.monotonic() - started < 2, "server exits promptly on SIGTERM")
        return code


def without_volatile(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "reqId"}


def list_query(**extra) -> dict:
    return {"workspaceId": PROJECT_ID, "environment": "dev", "secretPath": "/", **extra}


def check_auth(server: Server) -> str:
    status, body = server.login()
    check(status == 200 and body["tokenType"] == "Bearer" and body["expiresIn"] == 2592000, "login returns a token")
    token = body["accessToken"]
    check(token.count(".") == 2 and token.startswith("eyJ"), "token is JWT-shaped")
    status, body = server.login("wrong")
    check(status == 401 and without_volatile(body) == without_volatile(fixture("02")), "wrong secret is fixture 02")
    status, body = server.json("POST", "/api/v1/auth/universal-auth/login", body={"clientId": "nope", "clientSecret": "x"})
    check(status == 404 and body["message"] == fixture("03")["message"], "unknown client id is fixture 03")
    status, body = server.json("POST", "/api/v1/auth/universal-auth/login", body={"clientSecret": "x"})
    check(status == 422 and [issue["path"] for issue in body["message"]] == [["clientId"]], "422 lists only missing fields")
    status, body = server.json("POST", "/api/v1/auth/universal-auth/login", body=b"not json", headers={"Content-Type": "application/json"})
    check(status == 500 and body["error"] == "InternalServerError", "non-JSON login body is fixture 06")
    return token


def check_token_errors(server: Server, token: str) -> None:
    path = "/api/v3/secrets/raw"
    cases = [(None, "20"), ("garbage", "22"), ("a.b.c", "23"), ("expired.token.x", "42")]
    for bad_token, case in cases:
        status, body = server.json("GET", path, query=list_query(), token=bad_token)
        check(status == fixture(case)["statusCode"] and body["message"] == fixture(case)["message"], f"token {bad_token!r} gets fixture {case}")
    status, body = server.login()
    revoked = body["accessToken"]
    status, body = server.json("POST", "/api/v1/auth/token/revoke", body={"accessToken": revoked})
    check(status == 200 and body == fixture("45"), "revoke is fixture 45")
    status, body = server.json("GET", path, query=list_query(), token=revoked)
    check(status == 401 and body["message"] == fixture("46")["message"], "revoked token is fixture 46")
    status, body = server.json("POST", "/api/v1/auth/token/renew", body={"accessToken": token})
    check(status == 401 and body["message"] == fixture("48")["message"], "renew at max TTL is fixture 48")
    status, body = server.json("GET", path, query=list_query(), token=token)
    check(status == 401 and body["message"] == fixture("49")["message"], "token after failed renew is fixture 49")


def check_listings(server: Server, token: str) -> None:
    status, headers, body = server.request("GET", "/api/v3/secrets/raw", query=list_query(), token=token)
    check(status == 200 and body == fixture_bytes("10"), "dev / listing is byte-identical to fixture 10")
    check(headers["ETag"] == '"hSwakrl8yHjQtm+uwckLPOUA1wc="', "ETag matches the recorded one")
    status, _, body = server.request("GET", "/api/v3/secrets/raw", query=list_query(), token=token, headers={"If-None-Match": headers["ETag"]})
    check(status == 304 and body == b"", "If-None-Match answers 304")

    all_flags = list_query(include_imports="true", recursive="true", expandSecretReferences="true")
    v4_flags = {key: value for key, value in all_flags.items() if key != "workspaceId"}
    for version, query in (("v3", all_flags), ("v4", {**v4_flags, "projectId": PROJECT_ID})):
        path = "/api/v3/secrets/raw" if version == "v3" else "/api/v4/secrets"
        status, body = server.json("GET", path, query=query, token=token)
        expected = fixture("14")
        check(status == 200 and body["secrets"] == expected["secrets"], f"{version} all flags: secrets equal fixture 14")
        check(body["imports"] == expected["imports"], f"{version} all flags: imports equal fixture 14")

    simple_cases = [
        ("11", list_query(include_imports="true")), ("12", list_query(recursive="true")),
        ("13", list_query(expandSecretReferences="true")), ("15", list_query(secretPath="/backend")),
        ("32", list_query(secretPath="/backend/")), ("33", list_query(secretPath="backend")),
        ("27", list_query(environment="doesnotexist")), ("29", list_query(secretPath="/nope")),
        ("17", {"workspaceId": PROJECT_ID, "environment": "prod"}),
        ("16", {"workspaceSlug": "rust-client-test", "environment": "staging", "secretPath": "/"}),
        ("34", {"workspaceId": PROJECT_ID, "environment": "prod", "secretPath": "/edge", "expandSecretReferences": "true"}),
        ("35", {"workspaceId": PROJECT_ID, "environment": "prod", "secretPath": "/edge"}),
        ("36", {"workspaceId": PROJECT_ID, "environment": "prod", "secretPath": "/", "recursive": "true"}),
    ]
    for case, query in simple_cases:
        status, body = server.json("GET", "/api/v3/secrets/raw", query=query, token=token)
        check(status == 200 and body == fixture(case), f"listing matches fixture {case}")

    status, body = server.json("GET", "/api/v3/secrets/raw/REFERENCE_VALUE", query=list_query(expandSecretReferences="true"), token=token)
    check(status == 200 and body == fixture("18"), "single secret matches fixture 18")
    status, body = server.json("GET", "/api/v4/secrets/DOES_NOT_EXIST", query={"projectId": PROJECT_ID, "environment": "dev"}, token=token)
    check(status == 404 and body["message"] == fixture("19")["message"], "missing single secret is fixture 19")


def check_parameter_errors(server: Server, token: str) -> None:
    path = "/api/v3/secrets/raw"
    cases = [
        ("24", {"workspaceId": "00000000-0000-0000-0000-000000000000", "environment": "dev"}),
        ("25", {"workspaceId": "not-a-project", "environment": "dev"}),
        ("26", {"workspaceId": OTHER_PROJECT_ID, "environment": "dev"}),
        ("28", {"workspaceId": PROJECT_ID}),
        ("30", {"workspaceSlug": "no-such-slug", "environment": "dev"}),
        ("31", list_query(include_imports="1")),
    ]
    for case, query in cases:
        status, body = server.json("GET", path, query=query, token=token)
        check(status == fixture(case)["statusCode"] and without_volatile(body) == without_volatile(fixture(case)), f"error matches fixture {case}")
    status, body = server.json("GET", "/api/v1/workspace/" + PROJECT_ID, token=token)
    check(status == 200 and body == fixture("53"), "workspace matches fixture 53")
    status, body = server.json("GET", "/api/v1/workspace/" + OTHER_PROJECT_ID, token=token)
    check(status == 403 and without_volatile(body) == without_volatile(fixture("54")), "other workspace is fixture 54")
    for path in ("/api/v3/nope", "/healthcheck"):
        status, body = server.json("GET", path)
        check(status == 404 and body == fixture("52" if "api" in path else "51"), f"{path} is route-not-found")
    status, body = server.json("GET", "/api/status")
    check(status == 200 and body["message"] == "Ok", "status route")


def check_lockout_and_log(server: Server) -> None:
    for _ in range(3):
        server.login("wrong")
    status, body = server.login()
    check(status == 401 and "locked" in body["message"], "three failures lock the identity")
    status, entries = server.json("GET", "/__test/requests")
    check(status == 200 and len({entry["connection"] for entry in entries}) == 1, "requests reuse one connection")
    check(all(set(entry) == {"method", "path", "query", "status", "connection", "has_auth"} for entry in entries), "log entries have the documented fields")
    server.json("POST", "/__test/reset")
    status, body = server.login()
    check(status == 200, "reset clears the lockout")
    status, entries = server.json("GET", "/__test/requests")
    check(len(entries) == 1 and entries[0]["status"] == 200, "reset clears the request log")


def check_no_v4() -> None:
    server = Server("--no-v4", "--accept-token", "ready")
    status, body = server.json("GET", "/api/v4/secrets", query={"projectId": PROJECT_ID, "environment": "dev"}, token="ready")
    check(status == 404 and body == {"message": "Route GET:/api/v4/secrets not found", "error": "Not Found", "statusCode": 404}, "--no-v4 answers route-not-found")
    status, _ = server.json("GET", "/api/v3/secrets/raw", query=list_query(), token="ready")
    check(status == 200, "--no-v4 still serves v3")
    server.stop()


def raw_exchange(server: Server, path: str, read_timeout: float = 3.0) -> tuple[bytes, str]:
    """Send a GET on a new socket; return what arrived and how the exchange ended."""
    with socket.create_connection((server.host, server.port), timeout=read_timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ready\r\n\r\n".encode())
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return received, "closed"
                received += chunk
        except ConnectionResetError:
            return received, "reset"
        except socket.timeout:
            return received, "timeout"


def check_faults() -> None:
    list_path = "/api/v3/secrets/raw?" + urlencode(list_query())
    server = Server("--accept-token", "ready", "--fail", "list=503x1", "--fail", "list=429x1", "--retry-after", "7",
                    "--fail", "list=resetx1", "--fail", "list=htmlx1", "--fail", "list=truncatedx1",
                    "--fail", "list=notjsonx1", "--fail", "list=stallx1", "--fail", "list=hangx1",
                    "--fail", "list=oversizex1", "--oversize-bytes", "5000000", "--delay", "login=0.3")

    status, headers, body = server.request("GET", list_path, token="ready")
    check(status == 503 and json.loads(body)["statusCode"] == 503, "fault 503")
    status, headers, body = server.request("GET", list_path, token="ready")
    check(status == 429 and headers["Retry-After"] == "7" and json.loads(body)["message"].endswith("try again in 7 seconds"), "fault 429 with Retry-After")
    received, ending = raw_exchange(server, list_path)
    check(received == b"" and ending == "reset", "fault reset sends RST")

    server.connection = server.connect()
    status, headers, body = server.request("GET", list_path, token="ready")
    check(status == 200 and headers["Content-Type"].startswith("text/html"), "fault html")
    status, headers, body = server.request("GET", list_path, token="ready")
    check(status == 200 and len(body) == len(fixture_bytes("10")) // 2, "fault truncated halves the body")
    status, headers, body = server.request("GET", list_path, token="ready")
    check(status == 200 and body == b"OK" and headers["Content-Type"].startswith("application/json"), "fault notjson")

    received, ending = raw_exchange(server, list_path, read_timeout=1.0)
    check(received.startswith(b"HTTP/1.1 200") and ending == "timeout", "fault stall sends head and stops")
    received, ending = raw_exchange(server, list_path, read_timeout=1.0)
    check(received == b"" and ending == "timeout", "fault hang never answers")
    received, ending = raw_exchange(server, list_path, read_timeout=5.0)
    check(len(received) > 5_000_000 and received.endswith(b'"}'), "fault oversize streams the whole body")

    server.connection = server.connect()
    started = time.monotonic()
    server.login()
    check(time.monotonic() - started >= 0.3, "delay on login")

    status, entries = server.json("GET", "/__test/requests")
    check([entry["status"] for entry in entries[:9]] == [503, 429, None, 200, 200, 200, 200, None, 200], "log records fault statuses")
    check(server.stop() == 0, "exit status 0 after SIGTERM")


def check_rate_limit() -> None:
    server = Server("--rate-limit", "3", "--retry-after-header")
    statuses = [server.request("GET", "/api/status")[0] for _ in range(3)]
    status, headers, body = server.request("GET", "/api/status")
    check(statuses == [200, 200, 200] and status == 429, "rate limit answers 429 after N requests")
    check(headers["x-ratelimit-limit"] == "3" and headers["x-ratelimit-remaining"] == "0", "rate-limit headers")
    check(headers["retry-after"] == headers["x-ratelimit-reset"] and json.loads(body)["message"].endswith(f"try again in {headers['retry-after']} seconds"), "429 names the wait")
    status, _, _ = server.request("GET", "/__test/requests")
    check(status == 200, "test routes are not rate limited")
    server.stop()


def check_required_header() -> None:
    server = Server("--require-header", "X-Tenant=acme", "--require-header", "X-Single=it's=fine")
    status, body = server.login()
    check(status == 403 and "X-Tenant" in body["message"], "--require-header rejects a request without the header")
    server.connection.close()
    server.connection = server.connect()
    status, _, _ = server.request("POST", "/api/v1/auth/universal-auth/login",
                                  body={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
                                  headers={"X-Tenant": "acme", "X-Single": "it's=fine"})
    check(status == 200, "--require-header accepts the exact header values")
    status, entries = server.json("GET", "/__test/requests")
    check([entry["status"] for entry in entries] == [403, 200], "--require-header rejections are logged")
    server.stop()


def check_data_file() -> None:
    dataset = {"projects": [{"id": "p1", "slug": "one", "environments": [{"slug": "dev", "name": "Development"}],
                             "folders": {"dev": {"/": {"secrets": [
                                 {"key": "A", "value": "nul\u0000byte"}, {"key": "B", "value": "${A}-${dev.sub.C}-${MISSING}", "tags": ["t1"]},
                                 {"key": "BIG", "value": "x" * 200_000}, {"key": "U", "value": "日本語 🚀"},
                                 {"key": "LOOP", "value": "${LOOP}"}],
                                 "imports": [{"environment": "prod", "path": "/"}]},
                                 "/sub": {"secrets": [{"key": "C", "value": "c"}]}},
                                 "prod": {"/": {"secrets": [{"key": "P", "value": "p"}]}}}}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(dataset, file)
    server = Server("--data", file.name, "--accept-token", "ready")
    query = {"workspaceId": "p1", "environment": "dev", "expandSecretReferences": "true", "include_imports": "true", "recursive": "true"}
    status, body = server.json("GET", "/api/v4/secrets", query=query, token="ready")
    values = {s["secretKey"]: s["secretValue"] for s in body["secrets"]}
    check(status == 200 and values["B"] == "nul\u0000byte-c-${MISSING}" and values["LOOP"] == "${LOOP}", "--data expands references")
    check(len(values["BIG"]) == 200_000 and values["U"] == "日本語 🚀" and values["C"] == "c", "--data values survive")
    check([s["secretKey"] for s in body["imports"][0]["secrets"]] == ["P"] and "secretPath" not in body["imports"][0]["secrets"][0], "--data imports")
    status, body = server.json("GET", "/api/v4/secrets", query={"projectId": "p1", "environment": "dev", "tagSlugs": "t1,zz"}, token="ready")
    check([s["secretKey"] for s in body["secrets"]] == ["B"] and body["secrets"][0]["tags"][0]["slug"] == "t1", "tagSlugs filter")
    server.stop()


def check_generate() -> None:
    started = time.monotonic()
    server = Server("--generate", "10000", "--accept-token", "ready")
    started_up = time.monotonic() - started
    timings = []
    for _ in range(3):
        begin = time.monotonic()
        status, _, body = server.request("GET", "/api/v3/secrets/raw", query=list_query(), token="ready")
        timings.append(time.monotonic() - begin)
    secrets = json.loads(body)["secrets"]
    generated = [s for s in secrets if s["secretKey"].startswith("GEN_")]
    check(status == 200 and len(generated) == 10000 and all(len(s["secretValue"]) == 100 for s in generated), "--generate 10000 serves 10,000 secrets")
    check(max(timings) < 1.0, f"10,000-secret list served in {min(timings) * 1000:.0f}-{max(timings) * 1000:.0f} ms (start-up {started_up:.2f} s, {len(body)} bytes)")
    server.stop()


def check_ipv6() -> None:
    if not socket.has_ipv6:
        return
    try:
        server = Server("--host", "::1", "--accept-token", "ready")
    except AssertionError:
        print("skipped IPv6: cannot bind ::1")
        return
    status, _ = server.json("GET", "/api/status")
    check(status == 200, "serves on ::1")
    server.stop()
    result = subprocess.run([sys.executable, str(SERVER), "--host", "0.0.0.0"], capture_output=True, text=True, timeout=10)
    check(result.returncode != 0 and "not allowed" in result.stderr, "rejects a non-loopback --host")


def main() -> int:
    server = Server("--expired-token", "expired.token.x")
    token = check_auth(server)
    check_listings(server, token)
    check_parameter_errors(server, token)
    check_token_errors(server, token)
    check_lockout_and_log(server)
    check(server.stop() == 0, "exit status 0")
    check_no_v4()
    check_faults()
    check_rate_limit()
    check_required_header()
    check_data_file()
    check_generate()
    check_ipv6()
    print(f"\n{len(failures)} failed check(s)" if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
