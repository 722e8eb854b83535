#!/usr/bin/env python3
"""Infisical-compatible HTTP server for the infisical-init tests.

The server implements the part of the Infisical API that a machine identity
uses: Universal Auth login, token renew and revoke, secret listing in the v3
and v4 forms, single secrets, project lookup and the status route. It serves
an in-memory dataset and can inject the faults that a client has to survive.
Response bodies, error bodies and status codes come from responses recorded
against a real server, which the script loads at start-up from
``../fixtures/infisical-api`` (relative to this file). Standard library only.

Usage::

    python3 tests/server/infisical_test_server.py [--host 127.0.0.1] [--port 0] [options]

On start it prints one line, ``listening on http://HOST:PORT``, to stdout and
serves until SIGTERM or SIGINT, then exits with status 0. It binds only to
127.0.0.1 or ::1. ``--help`` lists the options: the identity and token
lifetimes, fault injection (``--fail``, ``--delay``), ``--rate-limit``,
``--no-v4``, ``--data`` and ``--generate``.

``--tls-cert FILE --tls-key FILE`` serve HTTPS instead of HTTP (PEM files;
the certificate file may hold the chain after the server certificate), and
the first line then reads ``listening on https://HOST:PORT``. The test routes
below are then HTTPS too. A client that rejects the certificate makes no
request, so nothing is logged for it.

``--require-header NAME=VALUE`` (repeatable) rejects every ``/api/`` request
that lacks the header, or has another value, with 403 and a message naming
the header; the request is logged with that status.

Default dataset, built from the recordings: project
``ea08c28d-5ca9-4510-a157-d2ec0639956a`` (slug ``rust-client-test``) with the
environments dev, staging and prod and the folders dev ``/`` (which imports
staging ``/``), dev ``/backend``, staging ``/``, prod ``/`` and prod ``/edge``.

Dataset file for ``--data FILE``, which replaces the default dataset::

    {"projects": [{"id": "...", "slug": "...", "name": "optional, default: slug",
       "environments": [{"slug": "dev", "name": "Development"}],
       "folders": {"dev": {"/": {"secrets": [{"key": "K", "value": "V",
                                              "expanded": "optional",
                                              "tags": ["optional-slug"]}],
                               "imports": [{"environment": "staging", "path": "/"}]},
                          "/backend": {"secrets": []}}}}]}

``slug`` defaults to the id. Environments that appear only under ``folders``
are added with their slug as name. ``expanded`` is the value served with
``expandSecretReferences=true``; without it the server expands ``${KEY}`` and
``${env.folder.KEY}`` itself. Values are any JSON strings (NUL, Unicode, long).
Secrets from the file get ids of the form ``00000000-0000-4000-8000-<counter>``
in file order, because a recursive listing is sorted by id as the real server
sorts it.

Test-only routes (no authentication, no rate limit, no faults, not logged):

* ``GET /__test/requests`` returns every request served so far as
  ``{"method", "path", "query", "status", "connection", "has_auth"}``.
  ``connection`` numbers the TCP connections, so a test can check reuse.
  ``status`` is null while no status line was sent (``hang``, ``reset``).
* ``POST /__test/reset`` clears that log, the rate-limit window, the fault
  counts and the login failures and lockouts. Issued tokens stay valid.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import itertools
import json
import math
import os
import random
import re
import select
import signal
import socket
import socketserver
import ssl
import string
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "infisical-api"
REQUIRED_FIXTURES = (
    "02", "03", "05", "06", "10", "11", "13", "15", "16", "17", "18", "19", "20", "22",
    "23", "24", "26", "28", "30", "31", "34", "35", "42", "43", "45", "46", "48", "49",
    "50", "52", "53", "54", "55", "56",
)

ALLOWED_HOSTS = ("127.0.0.1", "::1")
DEFAULT_CLIENT_ID = "11111111-2222-4333-8444-555555555555"
DEFAULT_CLIENT_SECRET = "test-client-secret-7f3a9c"
DEFAULT_TOKEN_TTL = 2592000.0
# A recorded project that the recorded identity is not a member of (403).
OTHER_PROJECT_ID = "17bac717-3cdd-455e-ba20-96eb372056a3"

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    b"<title>Infisical</title></head><body><div id=\"root\"></div></body></html>\n"
)

# Universal Auth lockout of the real server: 3 failures within 30 s lock the client id for 300 s.
LOCKOUT_FAILURES = 3
LOCKOUT_WINDOW_SECONDS = 30.0
LOCKOUT_SECONDS = 300.0
RATE_LIMIT_WINDOW_SECONDS = 60.0
MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024
MAX_EXPANSION_DEPTH = 10
STALL_BODY_BYTES = 8
OVERSIZE_CHUNK_BYTES = 64 * 1024
DEFAULT_OVERSIZE_BYTES = 80 * 1024 * 1024
DEFAULT_429_WAIT_SECONDS = 1

FAULT_ROUTES = ("login", "list", "get", "workspace", "revoke", "renew", "any")
NAMED_FAULTS = ("reset", "hang", "html", "truncated", "notjson", "stall", "oversize")
BOOLEAN_PARAMETERS = ("recursive", "expandSecretReferences", "include_imports", "includeImports")
REFERENCE_PATTERN = re.compile(r"\$\{([^{}]*)\}")
ALPHANUMERIC = string.ascii_letters + string.digits
# Maps every byte to a printable ASCII character other than space (0x21 to 0x7e).
PRINTABLE_TABLE = bytes(0x21 + byte % 94 for byte in range(256))
# base64url of {"alg":"HS256"}, the header of the JWT-shaped tokens that the server issues.
TOKEN_HEADER = "eyJhbGciOiJIUzI1NiJ9"

_synthetic_counter = itertools.count(1)


def synthetic_id() -> str:
    """Return a new UUID-shaped id; later ids sort after earlier ones."""
    return f"00000000-0000-4000-8000-{next(_synthetic_counter):012x}"


def new_request_id() -> str:
    return "req-" + "".join(random.choices(ALPHANUMERIC, k=14))


def encode_json(payload: Any) -> bytes:
    """Encode like the real server: compact, with non-ASCII text as UTF-8."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate from a --data file has no UTF-8 form, so escape it as \\udXXX.
        return json.dumps(payload, separators=(",", ":")).encode("ascii")


def replace_last_quoted(text: str, value: str) -> str:
    """Replace the last 'quoted' value in a recorded message, such as a project id."""
    if text.count("'") < 2:
        return text
    head, _, tail = text.rsplit("'", 2)
    return f"{head}'{value}'{tail}"


def seconds_number(seconds: float) -> float | int:
    """Return whole seconds as an int, as the real server sends them."""
    return int(seconds) if float(seconds).is_integer() else seconds


def javascript_type(value: Any) -> str:
    """Name the type of a JSON value the way zod validation messages do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "string"


# ---------------------------------------------------------------------------
# Dataset


@dataclass
class StoredSecret:
    """One secret, kept as the object that a listing returns (with ``secretPath``)."""

    record: dict[str, Any]
    expanded: str | None = None
    tag_slugs: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        return self.record["secretKey"]

    @property
    def value(self) -> str:
        return self.record["secretValue"]


@dataclass
class Folder:
    environment: str
    path: str
    folder_id: str
    secrets: list[StoredSecret] = field(default_factory=list)
    imports: list[tuple[str, str]] = field(default_factory=list)  # (environment, path)
    by_key: dict[str, StoredSecret] = field(default_factory=dict)

    def add(self, secret: StoredSecret) -> None:
        self.secrets.append(secret)
        self.by_key[secret.key] = secret


@dataclass
class Project:
    id: str
    slug: str
    name: str
    environments: list[dict[str, Any]]  # {"name", "slug", "id"}, as in the workspace route
    folders: dict[tuple[str, str], Folder] = field(default_factory=dict)

    def has_environment(self, slug: str) -> bool:
        return any(environment["slug"] == slug for environment in self.environments)

    def add_environment(self, slug: str, name: str | None = None) -> None:
        if not self.has_environment(slug):
            self.environments.append({"name": name or slug, "slug": slug, "id": synthetic_id()})

    def folder(self, environment: str, path: str, folder_id: str | None = None) -> Folder:
        """Return the folder, creating it (and its environment) when missing."""
        self.add_environment(environment)
        key = (environment, path)
        if key not in self.folders:
            self.folders[key] = Folder(environment, path, folder_id or synthetic_id())
        return self.folders[key]

    def folders_under(self, environment: str, path: str, recursive: bool) -> list[Folder]:
        """Return the folder at ``path`` and, when recursive, every folder below it."""
        found = [self.folders[(environment, path)]] if (environment, path) in self.folders else []
        if recursive:
            prefix = "/" if path == "/" else path + "/"
            below = [
                folder
                for (folder_environment, folder_path), folder in self.folders.items()
                if folder_environment == environment and folder_path != path and folder_path.startswith(prefix)
            ]
            found.extend(sorted(below, key=lambda folder: folder.path))
        return found


class DatasetError(Exception):
    """Invalid ``--data`` file; the message names the file and the JSON location."""


def normalize_secret_path(path: str) -> str | None:
    """Drop trailing slashes; return None for a path without its leading slash."""
    if not path.startswith("/"):
        return None
    return path.rstrip("/") or "/"


def tag_object(slug: str) -> dict[str, Any]:
    # NOTE: every recorded secret has an empty tag list, so this tag shape is an assumption.
    tag_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "infisical-test-server/tag/" + slug))
    return {"id": tag_id, "slug": slug, "name": slug, "color": None}


def make_secret(
    template: dict[str, Any],
    project_id: str,
    folder: Folder,
    key: str,
    value: str,
    expanded: str | None = None,
    tags: tuple[str, ...] = (),
) -> StoredSecret:
    """Create a secret with the fields of a recorded one (``template``)."""
    secret_id = synthetic_id()
    record = dict(template)
    record.update(
        id=secret_id,
        _id=secret_id,
        workspace=project_id,
        environment=folder.environment,
        version=1,
        secretKey=key,
        secretValue=value,
        secretComment="",
        secretPath=folder.path,
        secretMetadata=[],
        tags=[tag_object(slug) for slug in tags],
    )
    return StoredSecret(record, expanded, frozenset(tags))


# (environment, path, fixture with raw values, fixture with expanded values or None)
DEFAULT_FOLDERS = (
    ("dev", "/", "10", "13"),
    ("dev", "/backend", "15", None),
    ("staging", "/", "16", None),
    ("prod", "/", "17", None),
    ("prod", "/edge", "35", "34"),
)


def build_default_project(fixtures: dict[str, Any]) -> Project:
    """Build the recorded project from the recorded listings."""
    workspace = fixtures["53"]["workspace"]
    environments = [dict(environment) for environment in workspace["environments"]]
    project = Project(workspace["id"], workspace["slug"], workspace["name"], environments)
    recorded_folder_ids = {
        ("dev", "/"): fixtures["56"]["secretImports"][0]["folderId"],
        ("dev", "/backend"): fixtures["55"]["folders"][0]["id"],
        ("staging", "/"): fixtures["11"]["imports"][0]["folderId"],
    }

    for environment, path, raw_case, expanded_case in DEFAULT_FOLDERS:
        folder = project.folder(environment, path, recorded_folder_ids.get((environment, path)))
        expanded_by_id = {}
        if expanded_case:
            expanded_by_id = {item["id"]: item["secretValue"] for item in fixtures[expanded_case]["secrets"]}
        for record in fixtures[raw_case]["secrets"]:
            slugs = frozenset(tag["slug"] for tag in record["tags"])
            folder.add(StoredSecret(record, expanded_by_id.get(record["id"]), slugs))

    dev_root = project.folders[("dev", "/")]
    dev_root.imports = [(item["environment"], item["secretPath"]) for item in fixtures["11"]["imports"]]
    return project


def require(mapping: Any, key: str, kind: type, where: str, default: Any = ...) -> Any:
    """Return ``mapping[key]`` after checking its type; raise DatasetError otherwise."""
    if not isinstance(mapping, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    if key not in mapping:
        if default is ...:
            raise DatasetError(f"{where}: missing field '{key}'")
        return default
    value = mapping[key]
    if not isinstance(value, kind):
        raise DatasetError(f"{where}.{key}: expected {kind.__name__}, got {javascript_type(value)}")
    return value


def parse_folder_spec(project: Project, folder: Folder, spec: Any, where: str, template: dict) -> None:
    for index, secret_spec in enumerate(require(spec, "secrets", list, where, [])):
        secret_where = f"{where}.secrets[{index}]"
        key = require(secret_spec, "key", str, secret_where)
        value = require(secret_spec, "value", str, secret_where)
        expanded = require(secret_spec, "expanded", str, secret_where, None)
        tags = require(secret_spec, "tags", list, secret_where, [])
        if not all(isinstance(tag, str) for tag in tags):
            raise DatasetError(f"{secret_where}.tags: expected a list of tag slugs (strings)")
        folder.add(make_secret(template, project.id, folder, key, value, expanded, tuple(tags)))

    for index, import_spec in enumerate(require(spec, "imports", list, where, [])):
        import_where = f"{where}.imports[{index}]"
        environment = require(import_spec, "environment", str, import_where)
        path = normalize_secret_path(require(import_spec, "path", str, import_where))
        if path is None:
            raise DatasetError(f"{import_where}.path: must start with '/'")
        folder.imports.append((environment, path))


def parse_project_spec(spec: Any, where: str, template: dict) -> Project:
    project_id = require(spec, "id", str, where)
    slug = require(spec, "slug", str, where, project_id)
    name = require(spec, "name", str, where, slug)
    project = Project(project_id, slug, name, [])
    for index, environment in enumerate(require(spec, "environments", list, where, [])):
        environment_where = f"{where}.environments[{index}]"
        environment_slug = require(environment, "slug", str, environment_where)
        project.add_environment(environment_slug, require(environment, "name", str, environment_where, None))

    for environment, folders in require(spec, "folders", dict, where, {}).items():
        if not isinstance(folders, dict):
            raise DatasetError(f"{where}.folders.{environment}: expected an object of folder paths")
        for raw_path, folder_spec in folders.items():
            path = normalize_secret_path(raw_path)
            if path is None:
                raise DatasetError(f"{where}.folders.{environment}: path {raw_path!r} must start with '/'")
            folder = project.folder(environment, path)
            parse_folder_spec(project, folder, folder_spec, f"{where}.folders.{environment}.{raw_path}", template)
    return project


def load_dataset_file(path: Path, template: dict[str, Any]) -> list[Project]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read dataset file {path}: {error}") from error
    specs = require(document, "projects", list, str(path))
    projects = [parse_project_spec(spec, f"{path}: projects[{index}]", template) for index, spec in enumerate(specs)]
    if not projects:
        raise DatasetError(f"{path}: 'projects' is empty; add at least one project")
    ids = [project.id for project in projects]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: project ids must be unique, got {ids}")
    return projects


def add_generated_secrets(project: Project, template: dict[str, Any], count: int, value_size: int) -> None:
    """Add GEN_00000... to dev / with printable ASCII values, the same on every run."""
    folder = project.folder("dev", "/")
    generator = random.Random(count)
    for index in range(count):
        value = generator.randbytes(value_size).translate(PRINTABLE_TABLE).decode("ascii")
        folder.add(make_secret(template, project.id, folder, f"GEN_{index:05d}", value))


# ---------------------------------------------------------------------------
# Secret queries and reference expansion


@dataclass(frozen=True)
class SecretQuery:
    environment: str
    path: str | None  # None when the request gave a path without its leading slash
    recursive: bool
    expand: bool
    include_imports: bool
    tag_slugs: frozenset[str]

    @classmethod
    def from_parameters(cls, query: dict[str, str]) -> SecretQuery:
        tags = frozenset(tag.strip() for tag in query.get("tagSlugs", "").split(",") if tag.strip())
        return cls(
            environment=query["environment"],
            path=normalize_secret_path(query.get("secretPath") or "/"),
            recursive=query.get("recursive") == "true",
            expand=query.get("expandSecretReferences") == "true",
            include_imports="true" in (query.get("include_imports"), query.get("includeImports")),
            tag_slugs=tags,
        )


class ReferenceExpander:
    """Expand ``${KEY}`` and ``${env.folder.subfolder.KEY}`` in secret values.

    A recorded expanded value wins over computing one. References that do not
    resolve, and references that would close a cycle or nest deeper than
    MAX_EXPANSION_DEPTH, stay as literal text, like the real server leaves them.
    """

    def __init__(self, project: Project):
        self.project = project

    def value_of(self, folder: Folder, secret: StoredSecret) -> str:
        if secret.expanded is not None:
            return secret.expanded
        chain = frozenset({(folder.environment, folder.path, secret.key)})
        return self._expand(folder, secret.value, 0, chain)

    def _expand(self, folder: Folder, text: str, depth: int, chain: frozenset) -> str:
        if "${" not in text:
            return text

        def substitute(match: re.Match) -> str:
            target = self._resolve(folder, match.group(1).strip())
            if target is None:
                return match.group(0)
            target_folder, target_secret = target
            identity = (target_folder.environment, target_folder.path, target_secret.key)
            if identity in chain or depth >= MAX_EXPANSION_DEPTH:
                return match.group(0)
            if target_secret.expanded is not None:
                return target_secret.expanded
            return self._expand(target_folder, target_secret.value, depth + 1, chain | {identity})

        return REFERENCE_PATTERN.sub(substitute, text)

    def _resolve(self, folder: Folder, reference: str) -> tuple[Folder, StoredSecret] | None:
        if "." in reference:
            environment, *segments, key = reference.split(".")
            folder = self.project.folders.get((environment, "/" + "/".join(segments)))
        else:
            key = reference
        secret = folder.by_key.get(key) if folder else None
        return (folder, secret) if secret else None


def listed_secret(secret: StoredSecret, value: str) -> dict[str, Any]:
    listed = dict(secret.record)
    listed["secretValue"] = value
    return listed


def reshape(secret: StoredSecret, value: str, fields: list[str]) -> dict[str, Any]:
    """Return the secret with only ``fields``, in that order, as a recorded shape has them."""
    shaped = {name: secret.record.get(name) for name in fields}
    shaped["secretValue"] = value
    return shaped


class SecretCatalog:
    """Secret listings and single secrets of the projects, in the recorded response shapes."""

    def __init__(self, projects: list[Project], fixtures: dict[str, Any]):
        self.projects_by_id = {project.id: project for project in projects}
        self.projects_by_slug = {project.slug: project for project in projects}
        self.imported_fields = list(fixtures["11"]["imports"][0]["secrets"][0])
        self.single_fields = list(fixtures["18"]["secret"])

    def value_getter(self, project: Project, query: SecretQuery) -> Callable[[Folder, StoredSecret], str]:
        if query.expand:
            return ReferenceExpander(project).value_of
        return lambda folder, secret: secret.value

    def list_secrets(self, project: Project, query: SecretQuery) -> dict[str, Any]:
        if query.path is None or not project.has_environment(query.environment):
            return {"secrets": [], "imports": []}
        value_of = self.value_getter(project, query)
        listed = []
        for folder in project.folders_under(query.environment, query.path, query.recursive):
            for secret in folder.secrets:
                if query.tag_slugs and not secret.tag_slugs & query.tag_slugs:
                    continue
                listed.append(listed_secret(secret, value_of(folder, secret)))
        if query.recursive:
            listed.sort(key=lambda item: item["id"])  # recorded recursive listings are sorted by id
        imports = self.list_imports(project, query, value_of) if query.include_imports else []
        return {"secrets": listed, "imports": imports}

    def list_imports(self, project: Project, query: SecretQuery, value_of: Callable) -> list[dict[str, Any]]:
        """List the imports of the requested folder, in order, without merging them.

        NOTE: imports of sub-folders (recursive=true), nested imports and tag
        filters on imported secrets are not served; the recordings show none of them.
        """
        folder = project.folders.get((query.environment, query.path))
        entries = []
        for environment, path in folder.imports if folder else []:
            imported = project.folders.get((environment, path))
            if imported is None:
                continue
            secrets = [self.imported_secret(imported, secret, value_of) for secret in imported.secrets]
            entries.append({"secretPath": path, "environment": environment, "folderId": imported.folder_id, "secrets": secrets})
        return entries

    def imported_secret(self, folder: Folder, secret: StoredSecret, value_of: Callable) -> dict[str, Any]:
        shaped = reshape(secret, value_of(folder, secret), self.imported_fields)
        shaped["workspace"] = ""  # recorded imported secrets carry an empty workspace
        return shaped

    def find_secret(self, project: Project, query: SecretQuery, name: str) -> dict[str, Any] | None:
        """Return one secret in the single-secret shape; imports count when requested, the later one winning."""
        if query.path is None or not project.has_environment(query.environment):
            return None
        folder = project.folders.get((query.environment, query.path))
        candidates = [folder] if folder else []
        if folder and query.include_imports:
            candidates += [project.folders.get(imported) for imported in reversed(folder.imports)]
        for candidate in candidates:
            secret = candidate.by_key.get(name) if candidate else None
            if secret:
                value = self.value_getter(project, query)(candidate, secret)
                return reshape(secret, value, self.single_fields)
        return None


# ---------------------------------------------------------------------------
# Tokens, lockout, rate limit, faults and the request log


@dataclass
class AccessToken:
    issued_at: float  # time.monotonic() value that the max TTL counts from
    expires_at: float | None  # None: never expires
    state: str = "active"  # "active", "revoked" or "deleted"

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class TokenStore:
    def __init__(self, ttl: float, max_ttl: float, accepted: list[str], expired: list[str]):
        self.ttl = ttl
        self.max_ttl = max_ttl
        self.lock = threading.Lock()
        self._numbers = itertools.count(1)
        now = time.monotonic()
        self._tokens = {token: AccessToken(now, None) for token in accepted}
        self._tokens.update({token: AccessToken(now, -math.inf) for token in expired})

    def issue(self, issued_at: float | None = None) -> str:
        """Issue a JWT-shaped token; ``issued_at`` carries the max-TTL start over a renewal."""
        claims = json.dumps({"sub": "identity", "n": next(self._numbers)}, separators=(",", ":"))
        payload = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
        token = f"{TOKEN_HEADER}.{payload}.{''.join(random.choices(ALPHANUMERIC, k=32))}"
        now = time.monotonic()
        expires_at = now + self.ttl if self.ttl > 0 else None
        with self.lock:
            self._tokens[token] = AccessToken(issued_at if issued_at is not None else now, expires_at)
        return token

    def get(self, token: str) -> AccessToken | None:
        with self.lock:
            return self._tokens.get(token)

    def set_state(self, token: str, state: str) -> None:
        with self.lock:
            self._tokens[token].state = state


class LoginGuard:
    """Count failed logins per client id and lock the id like the real server does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def is_locked(self, client_id: str) -> bool:
        with self.lock:
            return time.monotonic() < self._locked_until.get(client_id, -math.inf)

    def record_failure(self, client_id: str) -> None:
        now = time.monotonic()
        with self.lock:
            failures = self._failures.setdefault(client_id, deque())
            failures.append(now)
            while failures and failures[0] <= now - LOCKOUT_WINDOW_SECONDS:
                failures.popleft()
            if len(failures) >= LOCKOUT_FAILURES:
                self._locked_until[client_id] = now + LOCKOUT_SECONDS
                failures.clear()

    def record_success(self, client_id: str) -> None:
        with self.lock:
            self._failures.pop(client_id, None)

    def clear(self) -> None:
        with self.lock:
            self._failures.clear()
            self._locked_until.clear()


class RateLimiter:
    """Admit at most ``limit`` requests per sliding 60-second window, for all clients together."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.lock = threading.Lock()
        self._admitted: deque[float] = deque()

    def admit(self) -> tuple[bool, dict[str, str], int]:
        """Return whether to serve the request, the x-ratelimit headers and the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            while self._admitted and self._admitted[0] <= now - RATE_LIMIT_WINDOW_SECONDS:
                self._admitted.popleft()
            allowed = len(self._admitted) < self.limit
            if allowed:
                self._admitted.append(now)
            oldest = self._admitted[0] if self._admitted else now
            wait = max(1, math.ceil(oldest + RATE_LIMIT_WINDOW_SECONDS - now))
            headers = {
                "x-ratelimit-limit": str(self.limit),
                "x-ratelimit-remaining": str(self.limit - len(self._admitted)),
                "x-ratelimit-reset": str(wait),
            }
        return allowed, headers, wait

    def clear(self) -> None:
        with self.lock:
            self._admitted.clear()


@dataclass
class Fault:
    route: str
    kind: str  # an HTTP status code such as "503", or one of NAMED_FAULTS
    count: int | None  # None: every request
    remaining: int | None = None

    def __post_init__(self) -> None:
        self.remaining = self.count


class FaultPlan:
    """Delays and faults from --delay and --fail; faults for one route apply in command-line order."""

    def __init__(self, faults: list[Fault], delays: list[tuple[str, float]]):
        self.faults = faults
        self.delays = delays
        self.lock = threading.Lock()

    def delay_for(self, route: str | None) -> float:
        """Return the seconds to sleep; a route's delay and the ``any`` delay add up."""
        return sum(seconds for name, seconds in self.delays if name in (route, "any"))

    def take(self, route: str | None) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault.route not in (route, "any") or fault.remaining == 0:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault.kind
        return None

    def reset(self) -> None:
        with self.lock:
            for fault in self.faults:
                fault.remaining = fault.count


class RequestLog:
    """Method, path, query and status of every request, for GET /__test/requests; no headers or bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def start(self, method: str, path: str, query: dict[str, str], connection: int, has_auth: bool) -> dict:
        entry = {"method": method, "path": path, "query": query, "status": None, "connection": connection, "has_auth": has_auth}
        with self.lock:
            self._entries.append(entry)
        return entry

    def finish(self, entry: dict[str, Any] | None, status: int) -> None:
        if entry is not None:
            with self.lock:
                entry["status"] = status

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self._entries]

    def clear(self) -> None:
        with self.lock:
            self._entries.clear()


# ---------------------------------------------------------------------------
# API routes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, encode_json(payload), headers=headers or {})


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    authorization: str | None
    params: dict[str, str]
    version: str  # "v1", "v3" or "v4"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    name: str | None  # the ROUTE of --delay and --fail; None: only "any" applies
    handler: str


ROUTES = tuple(
    Route(method, re.compile(pattern), name, handler)
    for method, pattern, name, handler in (
        ("GET", r"/api/status", None, "handle_status"),
        ("POST", r"/api/v1/auth/universal-auth/login", "login", "handle_login"),
        ("POST", r"/api/v1/auth/token/revoke", "revoke", "handle_revoke"),
        ("POST", r"/api/v1/auth/token/renew", "renew", "handle_renew"),
        ("GET", r"/api/v3/secrets/raw", "list", "handle_list"),
        ("GET", r"/api/v3/secrets/raw/(?P<name>[^/]+)", "get", "handle_get"),
        ("GET", r"/api/v4/secrets", "list", "handle_list"),
        ("GET", r"/api/v4/secrets/(?P<name>[^/]+)", "get", "handle_get"),
        ("GET", r"/api/v1/workspace/(?P<project_id>[^/]+)", "workspace", "handle_workspace"),
    )
)


def match_route(method: str, path: str, serve_v4: bool) -> tuple[Route, dict[str, str]] | None:
    if path.startswith("/api/v4/") and not serve_v4:
        return None
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match and route.method == method:
            return route, {name: unquote(value) for name, value in match.groupdict().items()}
    return None


class InfisicalApi:
    """Route handlers that return the recorded bodies and status codes."""

    def __init__(self, options: argparse.Namespace, fixtures: dict[str, Any], projects: list[Project]):
        self.options = options
        self.fixtures = fixtures
        self.catalog = SecretCatalog(projects, fixtures)
        self.projects = projects
        max_ttl = options.token_ttl if options.token_max_ttl is None else options.token_max_ttl
        self.tokens = TokenStore(options.token_ttl, max_ttl, options.accept_token, options.expired_token)
        self.login_guard = LoginGuard()

    def error(self, case: str, quoted: str | None = None, message: str | None = None) -> Response:
        """Build the recorded error response of fixture ``case`` with a fresh reqId.

        ``quoted`` replaces the quoted id or name in the recorded text, ``message`` the whole message.
        """
        body = dict(self.fixtures[case])
        body["reqId"] = new_request_id()
        for name in ("message", "error"):
            if quoted is not None and isinstance(body[name], str):
                body[name] = replace_last_quoted(body[name], quoted)
        if message is not None:
            body["message"] = message
        return json_response(body["statusCode"], body)

    def route_not_found(self, method: str, path: str) -> Response:
        body = dict(self.fixtures["52"])
        body["message"] = f"Route {method}:{path} not found"
        return json_response(404, body)

    def validation_failure(self, issues: list[dict[str, Any]]) -> Response:
        body = dict(self.fixtures["05"])
        body.update(reqId=new_request_id(), message=issues)
        return json_response(422, body)

    def parse_body_fields(self, body: bytes, names: tuple[str, ...]) -> tuple[dict | None, Response | None]:
        """Parse a JSON object whose ``names`` must be strings; return it or the error response.

        A body that is not JSON gets the recorded 500. An empty body counts as ``{}``
        and so gets a 422 that lists every field.
        """
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return None, self.error("06")
        if not isinstance(payload, dict):
            kind = javascript_type(payload)
            issue = {"code": "invalid_type", "expected": "object", "received": kind, "path": [], "message": f"Expected object, received {kind}"}
            return None, self.validation_failure([issue])
        issues = []
        for name in names:
            if name not in payload:
                issues.append(dict(self.fixtures["05"]["message"][0], path=[name]))
            elif not isinstance(payload[name], str):
                kind = javascript_type(payload[name])
                issues.append({"code": "invalid_type", "expected": "string", "received": kind, "path": [name], "message": f"Expected string, received {kind}"})
        return (None, self.validation_failure(issues)) if issues else (payload, None)

    def token_error(self, token: str, expired_case: str = "42") -> Response | None:
        """Return the recorded error for an unusable token, or None for a valid one."""
        record = self.tokens.get(token)
        if record is None:
            return self.error("22" if token.count(".") != 2 else "23")
        if record.is_expired(time.monotonic()):
            return self.error(expired_case)
        if record.state == "revoked":
            return self.error("46")
        if record.state == "deleted":
            return self.error("49")
        return None

    def authenticate(self, authorization: str | None) -> Response | None:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self.error("20")
        return self.token_error(token.strip())

    def token_response(self, issued_at: float | None = None) -> Response:
        return json_response(200, {
            "accessToken": self.tokens.issue(issued_at),
            "expiresIn": seconds_number(self.tokens.ttl),
            "accessTokenMaxTTL": seconds_number(self.tokens.max_ttl),
            "tokenType": "Bearer",
        })

    def handle_status(self, request: ApiRequest) -> Response:
        body = dict(self.fixtures["50"])
        body["date"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return json_response(200, body)

    def handle_login(self, request: ApiRequest) -> Response:
        payload, failure = self.parse_body_fields(request.body, ("clientId", "clientSecret"))
        if failure:
            return failure
        client_id = payload["clientId"]
        if client_id != self.options.client_id:
            return self.error("03")
        if self.login_guard.is_locked(client_id):
            return self.error(
                "02",
                message="Failed to authenticate: identity is locked after too many failed login attempts. Try again later.",
            )
        if payload["clientSecret"] != self.options.client_secret:
            self.login_guard.record_failure(client_id)
            return self.error("02")
        self.login_guard.record_success(client_id)
        return self.token_response()

    def handle_revoke(self, request: ApiRequest) -> Response:
        payload, failure = self.parse_body_fields(request.body, ("accessToken",))
        if failure:
            return failure
        token = payload["accessToken"]
        failure = self.token_error(token)
        if failure:
            return failure
        self.tokens.set_state(token, "revoked")
        return json_response(200, self.fixtures["45"])

    def handle_renew(self, request: ApiRequest) -> Response:
        """Renew a token unless that would pass its max TTL, which deletes it as the real server does.

        With the default max TTL (equal to the TTL) every renewal fails with the recorded 401.
        A successful renewal returns a new token and leaves the old one valid.
        """
        payload, failure = self.parse_body_fields(request.body, ("accessToken",))
        if failure:
            return failure
        token = payload["accessToken"]
        failure = self.token_error(token, expired_case="43")
        if failure:
            return failure
        record = self.tokens.get(token)
        now = time.monotonic()
        if self.tokens.max_ttl > 0 and now + self.tokens.ttl > record.issued_at + self.tokens.max_ttl:
            self.tokens.set_state(token, "deleted")
            return self.error("48")
        return self.token_response(issued_at=record.issued_at)

    def handle_list(self, request: ApiRequest) -> Response:
        return self.serve_secrets(request, name=None)

    def handle_get(self, request: ApiRequest) -> Response:
        return self.serve_secrets(request, name=request.params["name"])

    def serve_secrets(self, request: ApiRequest, name: str | None) -> Response:
        """Check the token, then the query parameters, then the project, and serve the query."""
        failure = self.authenticate(request.authorization)
        if failure:
            return failure
        failure = self.check_boolean_parameters(request.query)
        if failure:
            return failure
        project_id = request.query.get("projectId") if request.version == "v4" else None
        project_id = project_id or request.query.get("workspaceId")
        slug = request.query.get("workspaceSlug") if request.version == "v3" else None
        if not request.query.get("environment") or not (project_id or slug):
            return self.error("28")
        project, failure = self.find_project(project_id, slug)
        if failure:
            return failure

        query = SecretQuery.from_parameters(request.query)
        if name is None:
            return json_response(200, self.catalog.list_secrets(project, query))
        secret = self.catalog.find_secret(project, query, name)
        if secret is None:
            return self.error("19", quoted=name)
        return json_response(200, {"secret": secret})

    def check_boolean_parameters(self, query: dict[str, str]) -> Response | None:
        recorded = self.fixtures["31"]["message"][0]
        issues = []
        for name in BOOLEAN_PARAMETERS:
            value = query.get(name)
            if value is not None and value not in ("true", "false"):
                message = replace_last_quoted(recorded["message"], value)
                issues.append(dict(recorded, received=value, path=[name], message=message))
        if not issues:
            return None
        body = dict(self.fixtures["31"], reqId=new_request_id(), message=issues)
        return json_response(422, body)

    def find_project(self, project_id: str | None, slug: str | None) -> tuple[Project | None, Response | None]:
        if project_id:
            project = self.catalog.projects_by_id.get(project_id)
            if project:
                return project, None
            if project_id == OTHER_PROJECT_ID:
                return None, self.error("26", quoted=project_id)
            return None, self.error("24", quoted=project_id)
        project = self.catalog.projects_by_slug.get(slug)
        return (project, None) if project else (None, self.error("30", quoted=slug))

    def handle_workspace(self, request: ApiRequest) -> Response:
        failure = self.authenticate(request.authorization)
        if failure:
            return failure
        project_id = request.params["project_id"]
        project = self.catalog.projects_by_id.get(project_id)
        if project is None and project_id == OTHER_PROJECT_ID:
            return self.error("54", quoted=project_id)
        if project is None:
            # NOTE: not recorded; the text follows the recorded 404 for listings (fixture 24).
            return self.error("24", message=f"Project with ID '{project_id}' not found")
        workspace = dict(self.fixtures["53"]["workspace"])
        workspace.update(id=project.id, _id=project.id, name=project.name, slug=project.slug, environments=project.environments)
        return json_response(200, {"workspace": workspace})

    def injected_error(self, status: int, route: str | None, retry_after: int | None) -> Response:
        """Build the response for ``--fail ROUTE=STATUS``, from a recording where one fits."""
        if status == 401:
            return self.error("02" if route == "login" else "46")
        if status == 403:
            return self.error("42")
        if status == 500:
            return self.error("06")
        if status == 429:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return rate_limited_response(retry_after or DEFAULT_429_WAIT_SECONDS, headers)
        reason = http.client.responses.get(status, "Error")
        body = {"reqId": new_request_id(), "statusCode": status, "message": reason, "error": reason.replace(" ", "")}
        return json_response(status, body)


def rate_limited_response(wait_seconds: int, headers: dict[str, str]) -> Response:
    # NOTE: no 429 was recorded, so this body is modelled, not copied. Clients read
    # the wait from the end of the message, "try again in N seconds".
    body = {
        "reqId": new_request_id(),
        "statusCode": 429,
        "message": f"Rate limit exceeded. Please try again in {wait_seconds} seconds",
        "error": "RateLimitExceeded",
    }
    return json_response(429, body, headers)


def required_header_response(name: str) -> Response:
    # NOTE: not recorded; a proxy in front of the server that checks the header would answer so.
    body = {
        "reqId": new_request_id(),
        "statusCode": 403,
        "message": f"Request header '{name}' is missing or has the wrong value",
        "error": "Forbidden",
    }
    return json_response(403, body)


def oversize_body_parts(size: int) -> tuple[bytes, int, bytes]:
    """Split a valid JSON body of ``size`` bytes into prefix, padding length and suffix."""
    prefix, suffix = b'{"secrets":[],"imports":[],"padding":"', b'"}'
    return prefix, max(0, size - len(prefix) - len(suffix)), suffix


# ---------------------------------------------------------------------------
# HTTP server


class InfisicalRequestHandler(BaseHTTPRequestHandler):
    """One TCP connection; serves its requests with keep-alive until either side closes it."""

    # Headers and body go out in separate writes. With Nagle's algorithm the
    # body then waits for the client's delayed ACK (about 40 ms) on every
    # request after the first on a connection. Node.js, which runs the real
    # server, sets TCP_NODELAY too.
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"
    server_version = "infisical-test-server"
    server: InfisicalHttpServer

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.new_connection_id()
        self.log_entry: dict[str, Any] | None = None

    def do_GET(self) -> None:
        try:
            self.dispatch()
        except ConnectionError as error:
            self.close_connection = True
            self.log_message("%s %s: connection lost: %s", self.command, urlsplit(self.path).path, error)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if self.log_entry is not None and self.log_entry["status"] is None:
                self.send(self.server.api.error("06"))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def dispatch(self) -> None:
        self.log_entry = None
        parts = urlsplit(self.path)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self.read_body()
        if body is None:
            return
        if path.startswith("/__test/"):
            self.send(self.handle_test_route(path))
            return

        has_auth = self.headers.get("Authorization") is not None
        self.log_entry = self.server.request_log.start(self.command, path, query, self.connection_id, has_auth)
        method = "GET" if self.command == "HEAD" else self.command
        matched = match_route(method, path, serve_v4=not self.server.options.no_v4)
        route_name = matched[0].name if matched else None

        wrong_header = self.find_wrong_required_header() if path.startswith("/api/") else None
        if wrong_header:
            self.send(required_header_response(wrong_header))
            return

        rate_headers: dict[str, str] = {}
        if path.startswith("/api/") and self.server.rate_limiter.limit is not None:
            allowed, rate_headers, wait = self.server.rate_limiter.admit()
            if not allowed:
                if self.server.options.retry_after_header:
                    rate_headers["retry-after"] = str(wait)
                self.send(rate_limited_response(wait, rate_headers))
                return

        time.sleep(self.server.faults.delay_for(route_name))
        fault = self.server.faults.take(route_name)
        if fault and self.send_fault_before_handling(fault, route_name):
            return

        if matched:
            route, params = matched
            version = path.split("/")[2]
            request = ApiRequest(method, path, query, body, self.headers.get("Authorization"), params, version)
            response = getattr(self.server.api, route.handler)(request)
        else:
            response = self.server.api.route_not_found(self.command, path)
        response.headers.update(rate_headers)

        if fault == "truncated":
            response = Response(200, response.body[: len(response.body) // 2], headers=response.headers)
        if fault == "stall":
            self.send_stalled(response)
            return
        self.send(response)

    def find_wrong_required_header(self) -> str | None:
        """Return the name of the first --require-header header that is missing or has another value."""
        for name, value in self.server.options.require_header:
            if self.headers.get(name) != value:
                return name
        return None

    def send_fault_before_handling(self, fault: str, route_name: str | None) -> bool:
        """Send the faults that replace the route handler; return False for the ones applied to its response."""
        if fault.isdigit():
            self.send(self.server.api.injected_error(int(fault), route_name, self.server.options.retry_after))
        elif fault == "reset":
            self.reset_connection()
        elif fault == "hang":
            self.wait_for_client_to_leave()
        elif fault == "html":
            self.send(Response(200, HTML_PAGE, "text/html; charset=utf-8"))
        elif fault == "notjson":
            self.send(Response(200, b"OK"))
        elif fault == "oversize":
            self.send_oversize()
        else:
            return False
        return True

    def handle_test_route(self, path: str) -> Response:
        if self.command == "GET" and path == "/__test/requests":
            return json_response(200, self.server.request_log.snapshot())
        if self.command == "POST" and path == "/__test/reset":
            self.server.reset_test_state()
            return json_response(200, {"message": "Test state reset"})
        return self.server.api.route_not_found(self.command, path)

    def read_body(self) -> bytes | None:
        """Read the whole request body so the next request on the connection starts in place.

        Return None after sending an error (400 or 413), which also closes the connection.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked_body()
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.send_error(400, "Invalid Content-Length header")
            return None
        if length > MAX_REQUEST_BODY_BYTES:
            self.send_error(413, f"Request body larger than {MAX_REQUEST_BODY_BYTES} bytes")
            return None
        return self.rfile.read(length)

    def read_chunked_body(self) -> bytes | None:
        chunks, total = [], 0
        try:
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # skip trailer fields
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BODY_BYTES:
                    self.send_error(413, f"Request body larger than {MAX_REQUEST_BODY_BYTES} bytes")
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        except ValueError:
            self.send_error(400, "Invalid chunked request body")
            return None

    def send_head(self, response: Response, content_length: int) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(content_length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.server.request_log.finish(self.log_entry, response.status)

    def send(self, response: Response) -> None:
        """Send a complete response with an ETag, or 304 when If-None-Match matches it."""
        body = response.body
        # The recorded ETags are the base64 SHA-1 of the body.
        etag = '"' + base64.b64encode(hashlib.sha1(body).digest()).decode() + '"'
        response.headers.setdefault("ETag", etag)
        if response.status == 200 and self.headers.get("If-None-Match") == etag:
            response = Response(304, b"", response.content_type, response.headers)
            body = b""
        self.send_head(response, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_stalled(self, response: Response) -> None:
        """Send the head and a few body bytes, then send nothing more."""
        self.send_head(response, len(response.body))
        self.wfile.write(response.body[: min(STALL_BODY_BYTES, len(response.body) // 2)])
        self.wait_for_client_to_leave()

    def send_oversize(self) -> None:
        prefix, padding, suffix = oversize_body_parts(self.server.options.oversize_bytes)
        self.send_head(Response(200), len(prefix) + padding + len(suffix))
        self.wfile.write(prefix)
        chunk = b"x" * OVERSIZE_CHUNK_BYTES
        while padding > 0:
            self.wfile.write(chunk[:padding])
            padding -= len(chunk)
        self.wfile.write(suffix)

    def reset_connection(self) -> None:
        """Close the connection with an RST: SO_LINGER with a zero timeout discards unsent data."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the buffered reader holds a reference that would delay close()
        self.connection.close()
        self.log_message("%s %s reset", self.command, urlsplit(self.path).path)

    def wait_for_client_to_leave(self) -> None:
        """Read and drop whatever the client sends until it closes the connection."""
        self.close_connection = True
        try:
            while True:
                readable, _, _ = select.select([self.connection], [], [])
                if readable and not self.connection.recv(65536):
                    return
        except OSError:
            return

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.log_message("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.options.verbose:
            sys.stderr.write(f"infisical-test-server: {format % args}\n")


class InfisicalHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # tests open many connections at once

    def __init__(self, options: argparse.Namespace, api: InfisicalApi):
        self.options = options
        self.api = api
        self.request_log = RequestLog()
        self.rate_limiter = RateLimiter(options.rate_limit)
        self.faults = FaultPlan(options.fail, options.delay)
        self._connection_ids = itertools.count(1)
        self._connection_ids_lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        super().__init__((options.host, options.port), InfisicalRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host name (DNS); the server only needs the port.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.options.host, self.server_address[1]

    def new_connection_id(self) -> int:
        with self._connection_ids_lock:
            return next(self._connection_ids)

    def reset_test_state(self) -> None:
        self.request_log.clear()
        self.rate_limiter.clear()
        self.faults.reset()
        self.api.login_guard.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients may hang up at any time, and a client that rejects the TLS
        # certificate aborts the handshake.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


# ---------------------------------------------------------------------------
# Command line


def parse_fault(text: str) -> Fault:
    match = re.fullmatch(r"(?P<route>[a-z]+)=(?P<kind>[a-z]+|\d{3})(?:x(?P<count>\d+))?", text)
    if not match or match["route"] not in FAULT_ROUTES:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: expected ROUTE=KIND[xCOUNT], ROUTE one of {', '.join(FAULT_ROUTES)}")
    kind = match["kind"]
    if not (kind in NAMED_FAULTS or (kind.isdigit() and 400 <= int(kind) <= 599)):
        raise argparse.ArgumentTypeError(f"invalid fault kind {kind!r}: expected a status 400-599 or one of {', '.join(NAMED_FAULTS)}")
    count = int(match["count"]) if match["count"] else None
    if count == 0:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: COUNT must be at least 1")
    return Fault(match["route"], kind, count)


def parse_delay(text: str) -> tuple[str, float]:
    route, _, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if route not in FAULT_ROUTES or not value >= 0:
        raise argparse.ArgumentTypeError(f"invalid delay {text!r}: expected ROUTE=SECONDS, ROUTE one of {', '.join(FAULT_ROUTES)}")
    return route, value


def parse_required_header(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise argparse.ArgumentTypeError(f"invalid header {text!r}: expected NAME=VALUE with a valid header name")
    return name, value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Infisical-compatible HTTP server for the infisical-init tests.")
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind: 127.0.0.1 (default) or ::1; no other value is accepted")
    add("--port", type=non_negative_int, default=0, help="TCP port (default 0: a free port, printed at start)")
    add("--client-id", default=DEFAULT_CLIENT_ID, help="Universal Auth client id")
    add("--client-secret", default=DEFAULT_CLIENT_SECRET, help="Universal Auth client secret")
    add("--token-ttl", type=float, default=DEFAULT_TOKEN_TTL, help="lifetime of issued tokens in seconds (0: no expiry)")
    add("--token-max-ttl", type=float, help="max TTL in seconds that renewals may reach (default: --token-ttl, so renewals fail)")
    add("--accept-token", action="append", default=[], metavar="TOKEN", help="token that never expires but can be revoked (repeatable)")
    add("--expired-token", action="append", default=[], metavar="TOKEN", help="token that is always expired (repeatable)")
    add("--no-v4", action="store_true", help="respond to every /api/v4/ path with route-not-found (404), like servers before mid-2025")
    add("--data", type=Path, metavar="FILE", help="JSON dataset replacing the recorded one (schema in the module docstring)")
    add("--generate", type=non_negative_int, default=0, metavar="N", help="add N secrets GEN_00000... to dev / of the first project")
    add("--value-size", type=non_negative_int, default=100, metavar="BYTES", help="value length of generated secrets (default 100)")
    add("--delay", action="append", type=parse_delay, default=[], metavar="ROUTE=SECONDS",
        help=f"seconds to sleep before responding to ROUTE ({', '.join(FAULT_ROUTES)}); repeatable")
    add("--fail", action="append", type=parse_fault, default=[], metavar="ROUTE=KIND[xCOUNT]",
        help=f"respond to the first COUNT requests (default: all) to ROUTE with KIND: a status code or {', '.join(NAMED_FAULTS)}")
    add("--retry-after", type=non_negative_int, metavar="N", help="seconds named by --fail ...=429, also sent as Retry-After")
    add("--rate-limit", type=non_negative_int, metavar="N", help="max /api/ requests per sliding 60-second window, then 429")
    add("--retry-after-header", action="store_true", help="send retry-after with --rate-limit 429 responses")
    add("--oversize-bytes", type=non_negative_int, default=DEFAULT_OVERSIZE_BYTES, metavar="BYTES",
        help="body size of the oversize fault (default 80 MiB)")
    add("--require-header", action="append", type=parse_required_header, default=[], metavar="NAME=VALUE",
        help="reject /api/ requests without this exact header with 403, like a proxy that checks it (repeatable)")
    add("--verbose", action="store_true", help="log 'METHOD PATH STATUS' for every request to stderr")
    add("--exit-with-stdin", action="store_true", help="exit when standard input closes, so a dead test harness leaves no server behind")
    add("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this PEM certificate (chain); needs --tls-key")
    add("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    options = parser.parse_args(argv)

    if (options.tls_cert is None) != (options.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")

    options.host = options.host.strip("[]")
    if options.host not in ALLOWED_HOSTS:
        parser.error(f"--host {options.host!r} is not allowed: use 127.0.0.1 or ::1 (loopback only)")
    return options


def load_projects(options: argparse.Namespace, fixtures: dict[str, Any]) -> list[Project]:
    template = fixtures["10"]["secrets"][0]
    projects = load_dataset_file(options.data, template) if options.data else [build_default_project(fixtures)]
    if options.generate:
        add_generated_secrets(projects[0], template, options.generate, options.value_size)
    return projects


class StopServer(Exception):
    """Raised by the SIGTERM and SIGINT handlers to leave serve_forever()."""


def stop_on_signal(signum: int, frame: Any) -> None:
    raise StopServer(signal.Signals(signum).name)


def exit_when_stdin_closes() -> None:
    """Exit the whole process once standard input reaches end of file.

    A test harness passes a pipe as standard input; when the harness dies
    without stopping the server, the pipe closes and the server goes too.
    """
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def serve_tls(server: InfisicalHttpServer, certificate: Path, key: Path) -> None:
    """Wrap the listening socket so that every accepted connection speaks TLS.

    The handshake is left to the first read, which runs in the connection's
    own thread, so a client that stalls in the handshake blocks no other.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)


def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    fixtures = {path.name[:2]: json.loads(path.read_text(encoding="utf-8")) for path in FIXTURE_DIR.glob("[0-9][0-9]-*.json")}
    missing = [case for case in REQUIRED_FIXTURES if case not in fixtures]
    if missing:
        sys.stderr.write(f"infisical-test-server: recorded responses {missing} missing from {FIXTURE_DIR}\n")
        return 2
    try:
        projects = load_projects(options, fixtures)
    except DatasetError as error:
        sys.stderr.write(f"infisical-test-server: invalid dataset: {error}\n")
        return 2

    try:
        server = InfisicalHttpServer(options, InfisicalApi(options, fixtures, projects))
    except OSError as error:
        sys.stderr.write(f"infisical-test-server: cannot listen on {options.host} port {options.port}: {error}\n")
        return 1
    scheme = "http"
    if options.tls_cert:
        try:
            serve_tls(server, options.tls_cert, options.tls_key)
        except (OSError, ssl.SSLError) as error:
            sys.stderr.write(f"infisical-test-server: cannot load --tls-cert {options.tls_cert} or --tls-key {options.tls_key}: {error}\n")
            return 2
        scheme = "https"
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    if options.exit_with_stdin:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    host = f"[{options.host}]" if ":" in options.host else options.host
    print(f"listening on {scheme}://{host}:{server.server_address[1]}", flush=True)
    if options.verbose:
        secret_count = sum(len(folder.secrets) for project in projects for folder in project.folders.values())
        sys.stderr.write(f"infisical-test-server: serving {len(projects)} project(s), {secret_count} secrets\n")

    try:
        server.serve_forever()
    except StopServer as stop:
        if options.verbose:
            sys.stderr.write(f"infisical-test-server: stopping on {stop}\n")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
