"""Starts one eventd for the whole session and hands each test its own fresh account.

The server is the real binary (`EVENTD_BIN`, else `target/debug/eventd`), on a free loopback port and a
temporary data directory. Tests never share data: every test that needs an account gets a new one from
`eventd accounts create`, so lists, limits and events seen by one test are its own.

Backend: the embedded SQLite database in the temporary data directory, unless `EVENTD_TEST_DATABASE_URL` is set
(`postgres://user@host:port/db`). Then the session creates its own schema `eventd_c_<random>` in that database
(with `psql`), runs eventd and its CLI with `EVENTD_DATABASE_URL=<url>?options=-c search_path=<schema>`, and drops
the schema (CASCADE) when the session ends. The pytest header names the backend in use.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import stripe

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
ALLOWED_TARGETS = "127.0.0.0/8"
DATABASE_URL_ENV = "EVENTD_TEST_DATABASE_URL"
PSQL_TIMEOUT_S = 30


def random_alnum(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventd_binary() -> Path:
    env = os.environ.get("EVENTD_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "eventd"
    if not path.is_file():
        pytest.exit(f"eventd binary not found at {path} (build with `cargo build --locked` or set EVENTD_BIN)", 2)
    return path


def redact(url: str) -> str:
    """The URL without its password, for headers and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


class PgSchema:
    """A schema of its own in the PostgreSQL database `url`, created and dropped with `psql`."""

    def __init__(self, url: str):
        if "options=" in url:
            raise ValueError(f"{DATABASE_URL_ENV} must not set `options` (the suite sets search_path): {redact(url)}")
        self.url = url
        self.name = "eventd_c_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))

    def server_url(self) -> str:
        """The URL eventd gets: the same database, with this schema as its search_path."""
        options = urllib.parse.quote(f"-c search_path={self.name}", safe="")
        return f"{self.url}{'&' if '?' in self.url else '?'}options={options}"

    def psql(self, sql: str) -> None:
        if shutil.which("psql") is None:
            raise RuntimeError(f"{DATABASE_URL_ENV} is set but `psql` is not installed")
        res = subprocess.run(
            ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", "-d", self.url, "-c", sql],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PSQL_TIMEOUT_S,
        )
        if res.returncode != 0:
            raise RuntimeError(f"psql {redact(self.url)} -c {sql!r} failed ({res.returncode}): {res.stderr.strip()}")

    def create(self) -> None:
        self.psql(f"CREATE SCHEMA {self.name}")

    def drop(self) -> None:
        self.psql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


# One schema per session, named up front so the header can show it.
PG_SCHEMA: Optional[PgSchema] = None
PG_SCHEMA_ERROR: Optional[str] = None
if os.environ.get(DATABASE_URL_ENV):
    try:
        PG_SCHEMA = PgSchema(os.environ[DATABASE_URL_ENV])
    except ValueError as e:
        PG_SCHEMA_ERROR = str(e)


def pytest_report_header(config) -> str:
    if PG_SCHEMA_ERROR:
        return f"eventd backend: PostgreSQL -- invalid {DATABASE_URL_ENV}: {PG_SCHEMA_ERROR}"
    if PG_SCHEMA is not None:
        return f"eventd backend: PostgreSQL {redact(PG_SCHEMA.url)}, schema {PG_SCHEMA.name} (dropped at the end)"
    return f"eventd backend: SQLite (embedded, temporary data dir; set {DATABASE_URL_ENV} for PostgreSQL)"


def backend_env(data_dir: Path) -> dict:
    """The environment for eventd and its CLI: PostgreSQL in the session's schema, or SQLite in data_dir."""
    env = dict(os.environ)
    if PG_SCHEMA is not None:
        env["EVENTD_DATABASE_URL"] = PG_SCHEMA.server_url()
    else:
        # Never pick up a database URL from the caller's shell in the SQLite run.
        env.pop("EVENTD_DATABASE_URL", None)
    env["EVENTD_DATA_DIR"] = str(data_dir)
    return env


@dataclass(frozen=True)
class Account:
    id: str
    sk_test: str
    sk_live: str
    parent: Optional[str] = None


class Eventd:
    """A running eventd process plus helpers that talk to it."""

    def __init__(self, binary: Path, data_dir: Path, port: int, log_path: Path, bootstrap: Account):
        self.binary = binary
        self.data_dir = data_dir
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.bootstrap = bootstrap
        self.proc: Optional[subprocess.Popen] = None

    # -- process -----------------------------------------------------------------------------------
    def start(self) -> None:
        env = backend_env(self.data_dir)
        env["EVENTD_BOOTSTRAP_KEYS"] = f"{self.bootstrap.sk_test},{self.bootstrap.sk_live}"
        # Webhook URLs in these tests are loopback only (127.0.0.1:9, where nothing listens), so deliveries
        # never leave the machine; eventd refuses loopback targets unless allowed.
        env["EVENTD_ALLOW_PRIVATE_TARGETS"] = ALLOWED_TARGETS
        env.setdefault("RUST_LOG", "info")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last_err = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"eventd exited with {self.proc.returncode} before /healthz answered\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
                    last_err = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                last_err = f"HTTP {e.code}"
            except OSError as e:
                last_err = str(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"eventd /healthz not ready within {HEALTH_TIMEOUT_S}s ({last_err})\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "----- eventd log tail -----\n" + "\n".join(text[-lines:])

    # -- CLI ---------------------------------------------------------------------------------------
    def cli(self, *args: str) -> str:
        res = subprocess.run(
            [str(self.binary), *args, "--data-dir", str(self.data_dir)],
            env=backend_env(self.data_dir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if res.returncode != 0:
            raise RuntimeError(f"eventd {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def create_account(self, parent: Optional[str] = None) -> Account:
        args = ["accounts", "create"]
        if parent:
            args += ["--parent", parent]
        fields = {}
        for line in self.cli(*args).splitlines():
            parts = line.split()
            if len(parts) == 2:
                fields[parts[0]] = parts[1]
        missing = {"account", "sk_test", "sk_live"} - fields.keys()
        if missing:
            raise RuntimeError(f"`eventd accounts create` output lacks {sorted(missing)}")
        return Account(fields["account"], fields["sk_test"], fields["sk_live"], parent)

    def list_accounts(self) -> list[str]:
        return [line.strip() for line in self.cli("accounts", "list").splitlines() if line.strip()]

    # -- SDK ---------------------------------------------------------------------------------------
    def client(self, api_key: str, **kwargs) -> stripe.StripeClient:
        return stripe.StripeClient(api_key, base_addresses={"api": self.base_url}, **kwargs)


@pytest.fixture(scope="session")
def eventd(request):
    binary = eventd_binary()
    if PG_SCHEMA_ERROR:
        pytest.exit(PG_SCHEMA_ERROR, 2)
    if PG_SCHEMA is not None:
        try:
            PG_SCHEMA.create()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            # The caller asked for PostgreSQL: not reaching it is an error, never a silent fallback to SQLite.
            pytest.exit(f"cannot create the test schema in {redact(PG_SCHEMA.url)}: {e}", 2)
    tmp = Path(tempfile.mkdtemp(prefix="eventd-conformance-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    bootstrap = Account("", "sk_test_" + random_alnum(24), "sk_live_" + random_alnum(24))
    server = Eventd(binary, data_dir, free_port(), tmp / "eventd.log", bootstrap)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"\n{server.log_tail()}\n(full log: {server.log_path})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if PG_SCHEMA is not None:
            try:
                PG_SCHEMA.drop()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                print(f"\nwarning: could not drop schema {PG_SCHEMA.name}: {e}")


@pytest.fixture
def account(eventd) -> Account:
    """A brand-new top-level account, so the test sees only its own data."""
    return eventd.create_account()


@pytest.fixture
def client(eventd, account) -> stripe.StripeClient:
    """A test-mode StripeClient of the test's own account."""
    return eventd.client(account.sk_test)


@pytest.fixture
def live_client(eventd, account) -> stripe.StripeClient:
    """A live-mode StripeClient of the test's own account."""
    return eventd.client(account.sk_live)
