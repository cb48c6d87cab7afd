"""Starts one eventd for the whole session and hands each test its own fresh account.

The server is the real binary (`EVENTD_BIN`, else `target/debug/eventd`), on a free loopback port and a
temporary data directory. Tests never share data: every test that needs an account gets a new one from
`eventd accounts create`, so lists, limits and events seen by one test are its own.
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
        env = dict(os.environ)
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
    tmp = Path(tempfile.mkdtemp(prefix="eventd-conformance-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    bootstrap = Account("", "sk_test_" + random_alnum(24), "sk_live_" + random_alnum(24))
    server = Eventd(binary, data_dir, free_port(), tmp / "eventd.log", bootstrap)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"\n{server.log_tail()}\n(full log: {server.log_path})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


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
