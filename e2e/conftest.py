"""Fixtures: real `switchyard mock` and `switchyard serve` processes on ephemeral ports.

One clean gateway (`gateway`) in front of one well-behaved mock (`mock`) serves most
tests. Failure scenarios get their own gateway (`faults`, see harness/faults.py) in
front of mocks started with fault flags, so `/ready` of the clean gateway is never
affected by a deliberately broken provider.

When a test fails, the report shows what every server wrote to stderr during it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from harness import browser, clients, config, processes
from harness.faults import MOCK_FLAGS, Faults, gateway_config
from harness.processes import Server

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "switchyard"

# Every server started in this session, for teardown and failure reports.
_SERVERS: list[Server] = []
_STDERR_OFFSETS = pytest.StashKey[dict[int, int]]()


# === binary and process management ===


@pytest.fixture(scope="session")
def switchyard_bin() -> Path:
    path = Path(os.environ.get("SWITCHYARD_BIN", DEFAULT_BIN))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"switchyard binary not found at {path}: build it with `cargo build -p switchyard` "
            "or point SWITCHYARD_BIN at one",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("switchyard-e2e")


@dataclass
class Launcher:
    """Starts mocks and gateways; everything it starts is stopped at session end."""

    binary: Path
    run_dir: Path
    started: list[Server] = field(default_factory=list)

    def mock(self, name: str, *flags: str) -> Server:
        server = processes.start(
            self.binary,
            ["mock", "--listen", "127.0.0.1:0", "--seed", "7", *flags],
            name=name,
            log_dir=self.run_dir / "logs",
            env=processes.child_env(),
        )
        self._track(server)
        return server

    def gateway(self, name: str, cfg: dict[str, Any]) -> Server:
        path = config.write(cfg, self.run_dir / f"{name}.yaml")
        server = processes.start(
            self.binary,
            ["serve", "--config", str(path)],
            name=name,
            log_dir=self.run_dir / "logs",
            env=processes.child_env(config.UPSTREAM_KEY_ENV),
        )
        self._track(server)
        return server

    def _track(self, server: Server) -> None:
        self.started.append(server)
        _SERVERS.append(server)

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.stop()


@pytest.fixture(scope="session")
def launcher(switchyard_bin: Path, run_dir: Path) -> Iterator[Launcher]:
    launcher = Launcher(switchyard_bin, run_dir)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STDERR_OFFSETS] = {id(s): s.stderr_size() for s in _SERVERS}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:
        offsets = item.stash.get(_STDERR_OFFSETS, {})
        for server in _SERVERS:
            text = server.stderr_text(start=offsets.get(id(server), 0))
            if text.strip():
                report.sections.append((f"{server.name} (pid {server.pid}) stderr during test", text))
    return report


# === the clean setup ===


@pytest.fixture(scope="session")
def mock(launcher: Launcher) -> Server:
    return launcher.mock("mock")


@pytest.fixture(scope="session")
def gateway(launcher: Launcher, mock: Server) -> Server:
    cfg = config.gateway(
        providers={"up": config.provider(f"{mock.url}/v1")},
        models={
            "gpt-4.1": config.single("up", "mock-1"),
            "text-embedding-3-small": config.single("up", "mock-embed"),
        },
        max_body_bytes="1MiB",
    )
    return launcher.gateway("gateway", cfg)


@pytest.fixture(scope="session")
def client(gateway: Server) -> openai.OpenAI:
    return clients.sdk(gateway)


@pytest.fixture(scope="session")
def http(gateway: Server) -> Iterator[httpx.Client]:
    """A raw HTTP client to the gateway, authenticated."""
    with clients.raw(gateway) as c:
        yield c


@pytest.fixture(scope="session")
def mock_client(mock: Server) -> openai.OpenAI:
    """The SDK pointed straight at the clean mock: the reference answers."""
    return clients.sdk(mock, api_key="unused")


@pytest.fixture(scope="session")
def mock_http(mock: Server) -> Iterator[httpx.Client]:
    """A raw HTTP client to the clean mock (for its /mock/* introspection)."""
    with clients.raw(mock, api_key=None) as c:
        yield c


# === failure scenarios ===


@pytest.fixture(scope="session")
def faults(launcher: Launcher) -> Faults:
    mocks = {name: launcher.mock(f"mock-{name}", *flags) for name, flags in MOCK_FLAGS.items()}
    return Faults(launcher.gateway("faults", gateway_config(mocks)), mocks)


# === helpers for tests ===


@pytest.fixture(scope="session")
def start_gateway(launcher: Launcher) -> Callable[[str, dict[str, Any]], Server]:
    """Starts an extra gateway from a config (stopped at session end, or by the test)."""
    return launcher.gateway


@pytest.fixture(scope="session")
def start_mock(launcher: Launcher) -> Callable[..., Server]:
    """Starts an extra mock with fault flags (stopped at session end, or by the test)."""
    return launcher.mock


# === the dashboard in a browser ===


@pytest.fixture(scope="session")
def chromium(run_dir: Path) -> Iterator[Callable[[str], browser.Browser]]:
    """Starts headless Chromium sessions on a dashboard (`chromium("http://127.0.0.1:PORT/ui")`),
    each quit at session end (or by the test). Fails, never skips, without Chromium."""
    try:
        browser.check_installed()
    except browser.BrowserMissing as e:
        pytest.fail(str(e), pytrace=False)
    started: list[browser.Browser] = []

    def start(base: str) -> browser.Browser:
        log = run_dir / "logs" / f"chromedriver-{len(started)}.log"
        try:
            session = browser.Browser(browser.start_chromium(log), base.rstrip("/"))
        except browser.BrowserMissing as e:
            pytest.fail(str(e), pytrace=False)
        started.append(session)
        return session

    try:
        yield start
    finally:
        for session in reversed(started):
            session.quit()
