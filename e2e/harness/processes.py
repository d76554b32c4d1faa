"""Starting and stopping `switchyard mock` and `switchyard serve` as child processes.

Each server binds `127.0.0.1:0` and announces its port with exactly one stdout line,
`listening on 127.0.0.1:PORT`; we wait for that line (bounded), never for a fixed port.
Stderr goes to a log file that the failure report shows.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

_PR_SET_PDEATHSIG = 1
try:  # looked up once here: the child may only call it (no dlopen after fork)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the test runner dies, so no server
    outlives a killed pytest (Linux)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Server:
    """A running `switchyard` child process."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_size(self) -> int:
        try:
            return self.stderr_path.stat().st_size
        except FileNotFoundError:
            return 0

    def stderr_text(self, start: int = 0, limit: int = 12_000) -> str:
        try:
            with self.stderr_path.open("rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", "replace")
        return text if len(text) <= limit else "[...]\n" + text[-limit:]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code
        (negative: killed by that signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode


def _pump_stdout(proc: subprocess.Popen[bytes], lines: list[str], first: queue.Queue[str | None]) -> None:
    """Reads the child's stdout to the end (so it never blocks on a full pipe); hands
    the first line to `first`, or None at EOF."""
    assert proc.stdout is not None
    announced = False
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if not announced:
            first.put(line)
            announced = True
    if not announced:
        first.put(None)


def start(
    binary: Path,
    args: list[str],
    name: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
) -> Server:
    """Starts `binary args...` and waits for its `listening on` line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"{name}.stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            preexec_fn=_die_with_parent,
        )
    lines: list[str] = []
    first: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump_stdout, args=(proc, lines, first), daemon=True, name=f"{name}-stdout").start()

    def fail(why: str) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
        log = stderr_path.read_text("utf-8", "replace")[-6000:]
        raise RuntimeError(
            f"{name}: {why}\ncommand: {binary} {' '.join(args)}\nexit code: {proc.returncode}\n"
            f"stdout: {lines!r}\nstderr:\n{log}"
        )

    try:
        line = first.get(timeout=ready_timeout)
    except queue.Empty:
        fail(f"no 'listening on' line on stdout within {ready_timeout:.0f}s")
        raise  # unreachable: fail() raises
    if line is None:
        fail("exited (or closed stdout) before printing 'listening on 127.0.0.1:PORT'")
        raise AssertionError("unreachable")
    match = LISTENING.match(line)
    if match is None:
        fail(f"first stdout line is {line!r}, expected 'listening on 127.0.0.1:PORT'")
        raise AssertionError("unreachable")
    return Server(name=name, proc=proc, port=int(match.group(1)), stderr_path=stderr_path, stdout_lines=lines)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours, minus real provider keys, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.setdefault("RUST_LOG", "info")
    env.setdefault("NO_COLOR", "1")
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra or {})
    return env
