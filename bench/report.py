#!/usr/bin/env python3
"""Turns the raw results of bench/run.sh (JSON lines) into BENCHMARKS.md.

Each input line is one of:
  {"kind": "wrk", "scenario": "json-c1", "target": "nginx", "rps": ..., "p50_us": ..., "cpu_s": ...,
   "load_cpu_s": ... (wrk's own CPU time), ...}
  {"kind": "ttft", "target": "nginx", "n": ..., "p50_us": ..., "p99_us": ..., "errors": ...}
  {"kind": "rss", "process": "switchyard", "idle_kb": ..., "peak_kb": ..., "end_kb": ...}
  {"kind": "info", "key": "...", "value": "..."}
Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

TARGETS = [
    "mock",
    "nginx",
    "switchyard",
    "switchyard-usage-off",
    "switchyard-usage-pg",
    "switchyard-keys",
    "switchyard-redis",
    "switchyard-cache-hit",
    "switchyard-cache-miss",
]
TARGET_NAMES = {
    "mock": "mock (direct)",
    "nginx": "nginx proxy_pass",
    "switchyard": "Switchyard",
    "switchyard-usage-off": "Switchyard, usage log off",
    "switchyard-usage-pg": "Switchyard, usage log to PostgreSQL",
    "switchyard-keys": "Switchyard, the full stack: virtual key with limits and budget, usage log to SQLite",
    "switchyard-redis": "Switchyard, the same, limits in Redis",
    "switchyard-cache-hit": "Switchyard, response cache on, every request a hit",
    "switchyard-cache-miss": "Switchyard, response cache on, every request a miss",
}
# Keys, limits and budgets on: requests per CPU-second against the same gateway with them off.
MIN_KEYS_ON_RATIO = 0.9
# The usage log (and metrics, always on) on against the log off (issue 17).
MIN_USAGE_ON_RATIO = 0.95
# The response cache (issue 16): a memory hit against the proxied request (throughput,
# and p99 latency), and the cache on with every request a miss against it off
# (requests per CPU-second).
MIN_CACHE_HIT_THROUGHPUT_RATIO = 2.0
MAX_CACHE_HIT_P99_US = 50
MIN_CACHE_MISS_RATIO = 0.95
MODES = {"json": "JSON", "stream": "streaming"}

# Issue 20's bars for the full stack (the virtual key with its requests and tokens
# per minute and budget, the usage log to SQLite, metrics) against nginx.
MIN_FULL_JSON_PER_CPU = 0.9
MIN_FULL_STREAM_PER_CPU = 0.8
MAX_FULL_ADDED_P50_US = 25
MAX_FULL_ADDED_TTFT_US = 50
# The bars from DESIGN.md ("Performance, and how it is measured").
MIN_THROUGHPUT_RATIO = 0.8
MAX_ADDED_P50_US = 50
MAX_ADDED_TTFT_US = 200
MAX_IDLE_RSS_MB = 30
MAX_PEAK_RSS_MB = 100
# A whole 16-token stream from the mock at concurrency 1 takes well under this.
STALLED_STREAM_US = 10_000


def parse_scenario(scenario: str) -> tuple[str, int]:
    """`json-c50` → ("json", 50)."""
    mode, _, conns = scenario.partition("-c")
    return mode, int(conns)


def describe(scenario: str) -> str:
    mode, conns = parse_scenario(scenario)
    return f"{MODES.get(mode, mode)}, concurrency {conns}"


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def commit(repo: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD")
    if not head:
        return "no commit yet"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def us(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} µs"


def signed_us(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.0f} µs"


def mb(kb: float | None) -> str:
    return "–" if kb is None else f"{kb / 1024:.1f} MB"


def log_size(value: str | None) -> str:
    return "?" if value is None else f"{int(value) / 1024 / 1024:.1f} MB"


def verdict(ok: bool | None, problems: list[str]) -> str:
    if ok is None:
        return "not measured"
    text = "met" if ok and not problems else "**not met**"
    return f"{text} ({'; '.join(problems)})" if problems else text


def per_cpu_of(row: dict[str, Any] | None) -> float | None:
    """Requests per CPU-second of one run's row."""
    if not row or not row.get("cpu_s"):
        return None
    return float(row["requests"]) / float(row["cpu_s"])


def median_round(per_round: dict[int, float]) -> int:
    """The round whose value is the median (the lower middle one of an even count)."""
    ordered = sorted(per_round, key=lambda k: per_round[k])
    return ordered[(len(ordered) - 1) // 2]


class Results:
    """The rows of the median round of each measurement.

    Every round measures all targets back to back; a scenario's shown round is the
    one with the median Switchyard ÷ nginx throughput (at concurrency 1, the median
    added p50 latency), and time to first token's the one with the median added p50.
    The other rounds' figures are listed next to it.
    """

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        wrk: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
        ttft: dict[int, dict[str, dict[str, Any]]] = {}
        for r in rows:
            if r["kind"] == "wrk":
                wrk.setdefault(r["scenario"], {}).setdefault(r.get("round", 1), {})[r["target"]] = r
            elif r["kind"] == "ttft":
                ttft.setdefault(r.get("round", 1), {})[r["target"]] = r
        self.wrk: dict[tuple[str, str], dict[str, Any]] = {}
        # Every round's rows, for figures ranked by their own rounds.
        self.wrk_rounds = wrk
        self.ttft_rounds_rows = ttft
        # Per scenario: the figure each round gave, in round order (what picked the median).
        self.round_figures: dict[str, list[str]] = {}
        for scenario, by_round in wrk.items():
            figures = {n: self._figure(scenario, targets) for n, targets in by_round.items()}
            known = {n: f for n, f in figures.items() if f is not None}
            chosen = median_round(known) if known else min(by_round)
            for target, row in by_round[chosen].items():
                self.wrk[(scenario, target)] = row
            self.round_figures[scenario] = [self._show(scenario, figures[n]) for n in sorted(by_round)]
        added_ttft = {n: self._added(t.get("switchyard"), t.get("nginx"), "p50_us") for n, t in ttft.items()}
        known_ttft = {n: a for n, a in added_ttft.items() if a is not None}
        self.ttft = ttft[median_round(known_ttft) if known_ttft else min(ttft)] if ttft else {}
        self.ttft_rounds = [signed_us(added_ttft[n]) for n in sorted(ttft)]
        self.rss = {r["process"]: r for r in rows if r["kind"] == "rss"}
        self.info = {r["key"]: r["value"] for r in rows if r["kind"] == "info"}
        self.scenarios = sorted(wrk, key=lambda s: (list(MODES).index(parse_scenario(s)[0]), parse_scenario(s)[1]))

    @staticmethod
    def _added(sy: dict[str, Any] | None, ng: dict[str, Any] | None, field: str) -> float | None:
        if not sy or not ng or field not in sy or field not in ng:
            return None
        return float(sy[field]) - float(ng[field])

    @classmethod
    def _figure(cls, scenario: str, targets: dict[str, dict[str, Any]]) -> float | None:
        """What ranks the rounds of `scenario`: the throughput ratio, or at
        concurrency 1 the added p50 latency."""
        sy, ng = targets.get("switchyard"), targets.get("nginx")
        if parse_scenario(scenario)[1] == 1:
            return cls._added(sy, ng, "p50_us")
        if not sy or not ng or not float(ng["rps"]):
            return None
        return float(sy["rps"]) / float(ng["rps"])

    @staticmethod
    def _show(scenario: str, figure: float | None) -> str:
        if figure is None:
            return "–"
        return signed_us(figure) if parse_scenario(scenario)[1] == 1 else f"{figure:.2f}×"

    def busiest(self, mode: str) -> str | None:
        """The scenario of `mode` with the most connections."""
        of_mode = [s for s in self.scenarios if parse_scenario(s)[0] == mode]
        return max(of_mode, key=lambda s: parse_scenario(s)[1]) if of_mode else None

    def errors(self, scenario: str, target: str) -> int:
        r = self.wrk.get((scenario, target))
        if r is None:
            return 0
        return sum(int(r.get(k, 0)) for k in r if k.startswith("errors_"))

    def ratio(self, scenario: str) -> float | None:
        sy, ng = self.wrk.get((scenario, "switchyard")), self.wrk.get((scenario, "nginx"))
        if not sy or not ng or not ng["rps"]:
            return None
        return float(sy["rps"]) / float(ng["rps"])

    def added(self, scenario: str, field: str) -> float | None:
        sy, ng = self.wrk.get((scenario, "switchyard")), self.wrk.get((scenario, "nginx"))
        if not sy or not ng:
            return None
        return float(sy[field]) - float(ng[field])

    def per_cpu(self, scenario: str, target: str) -> float | None:
        return per_cpu_of(self.wrk.get((scenario, target)))

    def own_rounds(self, scenario: str, target: str, base: str, field: str) -> dict[int, float]:
        """`target` against `base` in each round of `scenario` ("ttft" for the
        time to first token rounds): `field` "per_cpu" is a ratio, a latency
        field ("p50_us") a difference."""
        by_round = self.ttft_rounds_rows if scenario == "ttft" else self.wrk_rounds.get(scenario, {})
        figures = {}
        for n, targets in by_round.items():
            a, b = targets.get(target), targets.get(base)
            if field == "per_cpu":
                pa, pb = per_cpu_of(a), per_cpu_of(b)
                if pa is not None and pb:
                    figures[n] = pa / pb
            elif a and b and field in a and field in b:
                figures[n] = float(a[field]) - float(b[field])
        return figures

    def versus(self, scenario: str, target: str, base: str, field: str) -> float | None:
        """`target` ÷ `base` in `scenario`: `field` is "rps" or "per_cpu"."""
        if field == "per_cpu":
            a, b = self.per_cpu(scenario, target), self.per_cpu(scenario, base)
        else:
            ra, rb = self.wrk.get((scenario, target)), self.wrk.get((scenario, base))
            a, b = (float(ra[field]) if ra else None), (float(rb[field]) if rb else None)
        if a is None or not b:
            return None
        return a / b

    def load_busy(self, scenario: str, target: str) -> float | None:
        """How busy wrk kept its own core (its CPU time over the run's duration)."""
        r = self.wrk.get((scenario, target))
        if not r or r.get("load_cpu_s") is None or not float(r["duration_s"]):
            return None
        return float(r["load_cpu_s"]) / float(r["duration_s"])

    def cache_counts(self, target: str) -> dict[str, int] | None:
        """What a cache gateway made of every request it was sent over the run."""
        value = self.info.get(f"{target}_counts")
        return None if value is None else json.loads(value)

    def added_ttft(self, field: str) -> float | None:
        return self._added(self.ttft.get("switchyard"), self.ttft.get("nginx"), field)


def targets_table(res: Results) -> list[str]:
    lines = ["| target | measured | bar | verdict |", "| --- | --- | --- | --- |"]
    for mode in MODES:
        scenario = res.busiest(mode)
        if scenario is None:
            continue
        ratio = res.ratio(scenario)
        problems = [f"{n} failed requests" for n in [res.errors(scenario, "switchyard")] if n]
        lines.append(
            f"| throughput, {describe(scenario)} | "
            f"{'–' if ratio is None else f'{ratio:.2f}× nginx'} | ≥ {MIN_THROUGHPUT_RATIO}× nginx | "
            f"{verdict(None if ratio is None else ratio >= MIN_THROUGHPUT_RATIO, problems)} |"
        )
    added = res.added("json-c1", "p50_us")
    problems = [f"{n} failed requests" for n in [res.errors("json-c1", "switchyard")] if n]
    lines.append(
        f"| added p50 latency, JSON, concurrency 1 | {signed_us(added)} vs nginx | ≤ +{MAX_ADDED_P50_US} µs | "
        f"{verdict(None if added is None else added <= MAX_ADDED_P50_US, problems)} |"
    )
    ttft = res.added_ttft("p50_us")
    sy_ttft = res.ttft.get("switchyard", {})
    problems = [f"{sy_ttft['errors']} failed requests"] if sy_ttft.get("errors") else []
    lines.append(
        f"| time to first token, p50 | {signed_us(ttft)} vs nginx | ≤ +{MAX_ADDED_TTFT_US} µs | "
        f"{verdict(None if ttft is None else ttft <= MAX_ADDED_TTFT_US, problems)} |"
    )
    lines += full_stack_rows(res)
    lines += on_off_rows(
        res, "switchyard-keys", "switchyard", "with a virtual key, its limits and budgets on", "off", MIN_KEYS_ON_RATIO
    )
    lines += on_off_rows(
        res,
        "switchyard",
        "switchyard-usage-off",
        "with the usage log on (SQLite, in the process) and metrics",
        "the log off",
        MIN_USAGE_ON_RATIO,
    )
    lines += on_off_rows(
        res,
        "switchyard-usage-pg",
        "switchyard-usage-off",
        "with the usage log on (PostgreSQL, its own process) and metrics",
        "the log off",
        MIN_USAGE_ON_RATIO,
    )
    lines += cache_targets(res)
    rss = res.rss.get("switchyard", {})
    idle, peak = rss.get("idle_kb"), rss.get("peak_kb")
    lines.append(
        f"| resident memory, idle | {mb(idle)} | < {MAX_IDLE_RSS_MB} MB | "
        f"{verdict(None if idle is None else idle / 1024 < MAX_IDLE_RSS_MB, [])} |"
    )
    lines.append(
        f"| resident memory, peak after the concurrency runs | {mb(peak)} | < {MAX_PEAK_RSS_MB} MB | "
        f"{verdict(None if peak is None else peak / 1024 < MAX_PEAK_RSS_MB, [])} |"
    )
    return lines


def full_stack_rows(res: Results) -> list[str]:
    """Issue 20's rows: the full stack (`switchyard-keys`: the virtual key with its
    limits and budget, the usage log to SQLite, metrics) against nginx, per
    CPU-second at the high concurrency, added p50 at concurrency 1 and added time
    to first token. Each is the median of the full stack's own rounds (the
    tables below show the round the plain gateway's median picked)."""
    lines = []
    full = "switchyard-keys"

    def median_of(figures: dict[int, float], show, unit: str) -> tuple[float | None, str]:
        if not figures:
            return None, "–"
        value = figures[median_round(figures)]
        if len(figures) == 1:
            return value, f"{show(value)} {unit}"
        rounds = ", ".join(show(figures[n]) for n in sorted(figures))
        return value, f"{show(value)} {unit} (the median of rounds {rounds})"

    for mode, bar in (("json", MIN_FULL_JSON_PER_CPU), ("stream", MIN_FULL_STREAM_PER_CPU)):
        scenario = res.busiest(mode)
        if scenario is None:
            continue
        ratio, shown = median_of(
            res.own_rounds(scenario, full, "nginx", "per_cpu"), lambda r: f"{r:.2f}×", "nginx"
        )
        problems = [f"{n} failed requests" for n in [res.errors(scenario, full)] if n]
        lines.append(
            f"| the full stack, requests per CPU-second, {describe(scenario)} | "
            f"{shown} | ≥ {bar}× nginx | "
            f"{verdict(None if ratio is None else ratio >= bar, problems)} |"
        )
    added, shown = median_of(res.own_rounds("json-c1", full, "nginx", "p50_us"), signed_us, "vs nginx")
    problems = [f"{n} failed requests" for n in [res.errors("json-c1", full)] if n]
    lines.append(
        f"| the full stack, added p50 latency, JSON, concurrency 1 | {shown} | "
        f"≤ +{MAX_FULL_ADDED_P50_US} µs | "
        f"{verdict(None if added is None else added <= MAX_FULL_ADDED_P50_US, problems)} |"
    )
    ttft, shown = median_of(res.own_rounds("ttft", full, "nginx", "p50_us"), signed_us, "vs nginx")
    errors = sum(int(t.get(full, {}).get("errors") or 0) for t in res.ttft_rounds_rows.values())
    lines.append(
        f"| the full stack, added time to first token, p50 | {shown} | "
        f"≤ +{MAX_FULL_ADDED_TTFT_US} µs | "
        f"{verdict(None if ttft is None else ttft <= MAX_FULL_ADDED_TTFT_US, [f'{errors} failed requests'] if errors else [])} |"
    )
    return lines


def cache_problems(res: Results, scenario: str, target: str) -> list[str]:
    """Failed requests, and requests the cache did not treat as the target intends
    (over the whole run: the hit target's first request misses, and fills the entry)."""
    problems = [f"{n} failed requests" for n in [res.errors(scenario, target)] if n]
    counts = res.cache_counts(target)
    if counts is not None:
        if target == "switchyard-cache-hit" and counts.get("miss", 0) + counts.get("bypass", 0) > 1:
            problems.append(f"{counts.get('miss', 0)} misses and {counts.get('bypass', 0)} bypasses over the run")
        answered = counts.get("hit", 0) + counts.get("semantic", 0)
        if target == "switchyard-cache-miss" and answered + counts.get("bypass", 0) > 0:
            problems.append(f"{answered} hits and {counts.get('bypass', 0)} bypasses over the run")
    return problems


def cache_targets(res: Results) -> list[str]:
    """The response cache's rows of the targets table (issue 16), when measured."""
    lines = []
    for mode in MODES:
        scenario = res.busiest(mode)
        if scenario is None:
            continue
        # The bar: a hit against a proxied miss (the same request, not yet cached).
        hit = res.versus(scenario, "switchyard-cache-hit", "switchyard-cache-miss", "rps")
        if hit is not None:
            per_off = res.versus(scenario, "switchyard-cache-hit", "switchyard", "rps")
            also = "" if per_off is None else f" ({per_off:.2f}× Switchyard with the cache off)"
            lines.append(
                f"| throughput of a memory cache hit, {describe(scenario)} | {hit:.2f}× a proxied miss{also} | "
                f"≥ {MIN_CACHE_HIT_THROUGHPUT_RATIO:g}× a proxied miss | "
                f"{verdict(hit >= MIN_CACHE_HIT_THROUGHPUT_RATIO, cache_problems(res, scenario, 'switchyard-cache-hit'))} |"
            )
    # The bar is the gateway's own time to answer a hit (its access log: arrival to the
    # answer handed to the connection), at the core benchmark's load.
    for scenario in [res.busiest("json")]:
        row = None if scenario is None else res.wrk.get((scenario, "switchyard-cache-hit"))
        if row is not None and row.get("gw_p99_us") is not None:
            p99 = float(row["gw_p99_us"])
            lines.append(
                f"| latency of a memory cache hit, {describe(scenario)}, p99 of the gateway's own time to answer "
                f"({row['gw_samples']:,} hits in its access log) | {us(p99)} (p50 {us(row['gw_p50_us'])}) | "
                f"< {MAX_CACHE_HIT_P99_US} µs | "
                f"{verdict(p99 < MAX_CACHE_HIT_P99_US, cache_problems(res, scenario, 'switchyard-cache-hit'))} |"
            )
    row = res.wrk.get(("json-c1", "switchyard-cache-hit"))
    if row is not None:
        lines.append(
            f"| latency of a memory cache hit, JSON, concurrency 1, p99 of wrk's round trip (kernel and client "
            f"included) | {us(row['p99_us'])} (p50 {us(row['p50_us'])}) | for reference | – |"
        )
    for mode in MODES:
        scenario = res.busiest(mode)
        if scenario is None:
            continue
        miss = res.versus(scenario, "switchyard-cache-miss", "switchyard", "per_cpu")
        if miss is not None:
            lines.append(
                f"| requests per CPU-second with the cache on and every request a miss, {describe(scenario)} | "
                f"{miss:.2f}× off | ≥ {MIN_CACHE_MISS_RATIO}× off | "
                f"{verdict(miss >= MIN_CACHE_MISS_RATIO, cache_problems(res, scenario, 'switchyard-cache-miss'))} |"
            )
    return lines


def on_off_rows(res: Results, on: str, off: str, what: str, base: str, bar: float) -> list[str]:
    """Target rows of `on`'s requests per CPU-second against `off`'s, in each mode's busiest scenario."""
    rows = []
    for mode in MODES:
        scenario = res.busiest(mode)
        ratio = None if scenario is None else res.versus(scenario, on, off, "per_cpu")
        if ratio is None:
            continue
        problems = [f"{n} failed requests" for n in [res.errors(scenario, on)] if n]
        rows.append(
            f"| requests per CPU-second {what}, {describe(scenario)} | {ratio:.2f}× {base} | ≥ {bar}× off | "
            f"{verdict(ratio >= bar, problems)} |"
        )
    return rows


def cache_note(res: Results, scenario: str) -> list[str]:
    """The cache rows of a scenario against Switchyard's, in words."""
    hit, miss = res.wrk.get((scenario, "switchyard-cache-hit")), res.wrk.get((scenario, "switchyard-cache-miss"))
    if hit is None and miss is None:
        return []

    def times(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}×"

    def busy(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    parts = []
    if hit is not None:
        parts.append(
            f"a cache hit: {times(res.versus(scenario, 'switchyard-cache-hit', 'switchyard', 'rps'))} Switchyard's "
            f"throughput ({times(res.versus(scenario, 'switchyard-cache-hit', 'switchyard-cache-miss', 'rps'))} "
            f"a miss's), {times(res.versus(scenario, 'switchyard-cache-hit', 'switchyard', 'per_cpu'))} its requests "
            f"per CPU-second, p50 {us(hit['p50_us'])}, p99 {us(hit['p99_us'])}"
        )
    if miss is not None:
        parts.append(
            f"every request a miss: {times(res.versus(scenario, 'switchyard-cache-miss', 'switchyard', 'per_cpu'))} "
            f"Switchyard's requests per CPU-second, "
            f"{times(res.versus(scenario, 'switchyard-cache-miss', 'switchyard', 'rps'))} its throughput; "
            f"wrk kept {busy(res.load_busy(scenario, 'switchyard-cache-miss'))} of its core busy building and sending "
            f"the varying bodies, {busy(res.load_busy(scenario, 'switchyard'))} against Switchyard"
        )
    return ["Response cache — " + "; ".join(parts) + ".", ""]


def scenario_section(res: Results, scenario: str) -> list[str]:
    lines = [
        f"### Chat, {describe(scenario)}",
        "",
        "| target | requests/s | p50 | p99 | failed requests | CPU used | requests per CPU-second |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target in TARGETS:
        r = res.wrk.get((scenario, target))
        if r is None:
            lines.append(f"| {TARGET_NAMES[target]} | – | – | – | – | – | – |")
            continue
        cpu = r.get("cpu_s")
        busy = None if cpu is None else float(cpu) / float(r["duration_s"])
        per_cpu = "–" if not cpu else f"{float(r['requests']) / float(cpu):,.0f}"
        lines.append(
            f"| {TARGET_NAMES[target]} | {float(r['rps']):,.0f} | {us(r['p50_us'])} | {us(r['p99_us'])} | "
            f"{res.errors(scenario, target)} | {'–' if busy is None else f'{busy:.0%}'} | {per_cpu} |"
        )
    ratio = res.ratio(scenario)
    mock_row = res.wrk.get((scenario, "mock"))
    if parse_scenario(scenario) == ("stream", 1) and mock_row and float(mock_row["p50_us"]) > STALLED_STREAM_US:
        lines += [
            "",
            f"**Warning:** a whole stream straight from the mock takes {us(mock_row['p50_us'])} at p50, where a few "
            "hundred µs are expected: the mock's streams stall (typically Nagle's algorithm against delayed ACKs, "
            "~40 ms, when TCP_NODELAY is not set), so the streaming rows measure that stall more than the proxies.",
        ]
    lines += [
        "",
        f"Switchyard ÷ nginx throughput: {'–' if ratio is None else f'{ratio:.2f}×'}; "
        f"added latency vs nginx: p50 {signed_us(res.added(scenario, 'p50_us'))}, "
        f"p99 {signed_us(res.added(scenario, 'p99_us'))}. "
        f"{rounds_note(res.round_figures.get(scenario, []), 'by round')}",
        "",
        *cache_note(res, scenario),
    ]
    return lines


def rounds_note(figures: list[str], what: str) -> str:
    """`Rounds (by round): 0.78×, 0.83×, 0.86×; the table is the median round.`"""
    if len(figures) < 2:
        return ""
    return f"Rounds ({what}): {', '.join(figures)}; the table shows the median round."


def ttft_section(res: Results) -> list[str]:
    n = next((r["n"] for r in res.ttft.values() if "n" in r), "–")
    lines = [
        "### Time to first token",
        "",
        f"{n} sequential streaming requests per target on one keep-alive connection, timed from writing the "
        "request to the first `data:` line with content (mock `--ttft 0s`).",
        "",
        "| target | p50 | p99 | failed requests |",
        "| --- | ---: | ---: | ---: |",
    ]
    for target in TARGETS:
        r = res.ttft.get(target)
        if r is None:
            lines.append(f"| {TARGET_NAMES[target]} | – | – | – |")
        else:
            lines.append(
                f"| {TARGET_NAMES[target]} | {us(r.get('p50_us'))} | {us(r.get('p99_us'))} | {r.get('errors', 0)} |"
            )
    lines += [
        "",
        f"Switchyard − nginx: p50 {signed_us(res.added_ttft('p50_us'))}, p99 {signed_us(res.added_ttft('p99_us'))}. "
        f"{rounds_note(res.ttft_rounds, 'added p50 by round')}",
        "",
    ]
    return lines


def memory_section(res: Results) -> list[str]:
    lines = [
        "### Memory",
        "",
        "| process | idle, after start (VmRSS) | at the end (VmRSS) | peak (VmHWM) |",
        "| --- | ---: | ---: | ---: |",
    ]
    processes = (
        ("switchyard", "Switchyard"),
        ("nginx", "nginx (master + worker)"),
        ("switchyard-cache-hit", "Switchyard, cache on, every request a hit"),
        ("switchyard-cache-miss", "Switchyard, cache on, every request a miss (each answer stored)"),
    )
    for process, name in processes:
        r = res.rss.get(process)
        if r:
            lines.append(f"| {name} | {mb(r.get('idle_kb'))} | {mb(r.get('end_kb'))} | {mb(r.get('peak_kb'))} |")
    return [*lines, ""]


def fenced(title: str, path: str | None, lang: str) -> list[str]:
    if not path or not Path(path).is_file():
        return []
    return [
        f"<details><summary>{title}</summary>",
        "",
        f"```{lang}",
        # The run's temporary directory says nothing about the setup: name it.
        Path(path).read_text().rstrip().replace(str(Path(path).parent), "$BENCH_WORK_DIR"),
        "```",
        "",
        "</details>",
        "",
    ]


def cache_header(res: Results) -> list[str]:
    """The header table's row on the two cache gateways, when they ran."""
    hit, miss = res.cache_counts("switchyard-cache-hit"), res.cache_counts("switchyard-cache-miss")
    if hit is None and miss is None:
        return []

    def counted(counts: dict[str, int] | None) -> str:
        if counts is None:
            return "?"
        return (
            f"{counts.get('hit', 0):,} hits, {counts.get('miss', 0):,} misses, {counts.get('bypass', 0):,} bypasses, "
            f"{counts.get('fill_stored', 0):,} answers stored"
        )

    return [
        "| response cache | two more gateways, the same config plus `cache: { backend: memory }` (every other "
        "setting at its default), sent the configured key: one gets the same body every time, the other a body "
        "whose last user message ends in a tag and a counter (wrk builds it with a Lua call per request, on "
        f"wrk's core); over the whole run the first answered {counted(hit)}, the second {counted(miss)} |"
    ]


def render(res: Results, args: argparse.Namespace) -> str:
    info = res.info
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.sh`; rerun it rather than editing this file. How the numbers are taken is in "
        'DESIGN.md ("Performance, and how it is measured") and bench/README.md.',
        "",
        "| | |",
        "| --- | --- |",
        f"| date | {now} |",
        f"| machine | {cpu_model()}, nproc {os.cpu_count()}, {memory_total()} RAM, Linux {platform.release()} |",
        f"| commit | {res.info.get('commit') or commit(Path(args.repo))} |",
        f"| command | `{args.command}` |",
        f"| load | wrk ({info.get('wrk_version', '?')}), {args.rounds} rounds, {args.duration} s per run after a "
        f"{args.warmup} s warm-up, "
        f"POST of a {info.get('body_bytes', '?')}-byte chat body with four messages |",
        f"| pinning | {info.get('pinning', '?')} |",
        f"| load average | {info.get('loadavg_start', '?')} at the start, {info.get('loadavg_end', '?')} at the end "
        "(1, 5, 15 min; anything else running skews the numbers) |",
        f"| reference | {info.get('nginx_version', 'nginx')} `proxy_pass`, `worker_processes 1`, upstream keepalive, "
        "`proxy_buffering off`, no access log |",
        f"| Switchyard | `{args.binary}`, `auth.mode: keys`, RUST_LOG={info.get('rust_log', '(unset)')}, "
        f"{log_size(info.get('gateway_log_bytes'))} of log lines on stderr over the whole run |",
        *cache_header(res),
        "",
        "## Targets",
        "",
        *targets_table(res),
        "",
        "## Results",
        "",
        "The mock row is the same mock without any proxy in between (wrk and the mock share one core there, so it "
        "is a ceiling for orientation, not a per-core figure). p50 and p99 are wrk's latency percentiles. "
        "CPU used is the measured process's CPU time over the run (100% = one core; for nginx, master and worker): "
        "a proxy well below 100% was not the bottleneck, and requests per CPU-second then compares efficiency.",
        "",
    ]
    for scenario in res.scenarios:
        lines += scenario_section(res, scenario)
    lines += ttft_section(res)
    lines += memory_section(res)
    for section in args.section:
        if Path(section).is_file():
            lines += [Path(section).read_text().rstrip(), ""]
    lines += ["## Configuration used", ""]
    lines += fenced("switchyard.yaml", args.gateway_config, "yaml")
    lines += fenced("switchyard-cache.yaml (the cache targets)", args.cache_config, "yaml")
    lines += fenced("nginx.conf", args.nginx_config, "nginx")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--repo", default=".")
    parser.add_argument("--command", default="bench/run.sh")
    parser.add_argument("--duration", default="?")
    parser.add_argument("--warmup", default="?")
    parser.add_argument("--rounds", default="1")
    parser.add_argument("--binary", default="?")
    parser.add_argument("--gateway-config")
    parser.add_argument("--cache-config", help="the cache targets' gateway config")
    parser.add_argument("--nginx-config")
    parser.add_argument(
        "--section",
        action="append",
        default=[],
        help="a Markdown section kept by hand to include (callgrind counts, overload figures); repeatable",
    )
    args = parser.parse_args()
    res = Results(load(args.results))
    args.output.write_text(render(res, args))
    print("\n".join(targets_table(res)))


if __name__ == "__main__":
    main()
