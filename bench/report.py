#!/usr/bin/env python3
"""The benchmark report: edgekv beside its peers, in one run on one machine.

    python bench/report.py                      # everything, about 20 minutes on 2 cores
    python bench/report.py --only server        # one section (server|embedded|scale|...)
    python bench/report.py --quick --out /tmp/r # a small smoke run (about a minute)
    python bench/report.py --scale-5m           # the scale section also at 5,000,000 keys

Writes ``docs/benchmarks.md`` and its figures under ``docs/benchmarks/`` (or under ``--out``),
and the raw numbers to ``bench/results/report.json`` (``--json``; ignored by git).  With
``--only`` the other sections are taken from that JSON file when it holds them, so one figure
can be re-measured without re-running the rest.

Sections, each built from the benchmark scripts beside this file:

* ``server``: ``resp_vs_redis.py`` (redis-benchmark SET/GET against edgekv and a real
  redis-server at matched fsync), ``client_workload.py`` (a redis-py mixed workload) and
  ``hotpath_profile.py`` (py-spy on the server under SET/GET load);
* ``embedded``: ``embedded_peers.py`` (the engine beside SQLite, LMDB and diskcache);
* ``scale``: ``engine_bench.py`` (open time and RSS per key at 100k and 1M keys) and
  ``compaction_bench.py`` (disk bytes against live bytes around compaction);
* ``compaction``: ``compaction_latency.py`` (p99 over time while compaction runs);
* ``crypto``: ``crypto_bench.py`` (encryption and compression on vs off).

A section whose script is missing or fails is reported as "not run" with the reason; the rest
go on.  Every comparison alternates A/B between rounds and reports the median with the min-max
spread, because a shared machine is noisy.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for path in (str(BENCH), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

SECTIONS = ("server", "embedded", "scale", "compaction", "crypto")
BEHIND_FACTOR = 1.10  # a gap smaller than 10 % is not called "behind"
BEHIND_ROWS = 30  # the table lists this many of the largest gaps

FULL = {
    "server": {"fsyncs": ("no", "everysec", "always"), "pipelines": (1, 16),
               "value_sizes": (100, 4096), "rounds": 3, "requests": {1: 30_000, 16: 100_000},
               "clients": 50, "bare": True},
    "client": {"fsyncs": ("no", "everysec", "always"), "rounds": 3, "seconds": 4.0,
               "clients": 4, "keys": 10_000},
    "profile": {"seconds": 8.0, "pipelines": (1, 16)},
    "embedded": {"keys": 100_000, "rounds": 3, "seconds": 2.0},
    "scale": {"sizes": (100_000, 1_000_000), "compaction_keys": 300_000},
    "compaction": {"keys": 200_000, "duration_s": 15.0},
    "crypto": {"values": 20_000, "rounds": 5},
}
QUICK = {
    "server": {"fsyncs": ("everysec", "always"), "pipelines": (1, 16), "value_sizes": (100,),
               "rounds": 2, "requests": {1: 1_000, 16: 5_000}, "clients": 20, "bare": True},
    "client": {"fsyncs": ("everysec",), "rounds": 2, "seconds": 1.0, "clients": 2,
               "keys": 1_000},
    "profile": {"seconds": 2.0, "pipelines": (16,), "keyspace": 10_000, "engine_ops": 20_000},
    "embedded": {"keys": 5_000, "rounds": 2, "seconds": 0.2},
    "scale": {"sizes": (5_000, 20_000), "compaction_keys": 10_000},
    "compaction": {"keys": 10_000, "duration_s": 2.0},
    "crypto": {"values": 2_000, "rounds": 2},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def machine_info() -> dict:
    """What the numbers were measured on: hardware, kernel, and every peer's version."""
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except ImportError:
        memory = None
    try:
        import lmdb

        lmdb_version = f"{lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})"
    except ImportError:
        lmdb_version = None
    redis_server = _command_version(["redis-server", "--version"])
    if redis_server:
        match = re.search(r"v=(\S+)", redis_server)
        redis_server = match.group(1) if match else redis_server
    return {
        "cores": os.cpu_count(), "cpu_model": _cpu_model(), "memory_bytes": memory,
        "kernel": platform.release(), "os": _os_name(), "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {
            "edgekv": _version("edgekv"), "redis-server": redis_server,
            "redis-benchmark": _command_version(["redis-benchmark", "--version"]),
            "redis-py": _version("redis"), "hiredis": _version("hiredis"),
            "uvloop": _version("uvloop"), "SQLite": sqlite3.sqlite_version,
            "py-lmdb": lmdb_version, "diskcache": _version("diskcache"),
            "py-spy": _command_version(["py-spy", "--version"]),
            "matplotlib": _version("matplotlib"),
        },
        "loadavg_start": os.getloadavg(),
    }


def _busy_cpu_seconds() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class OtherLoad:
    """How much of the machine's CPU other processes took since this object was made: the
    busy CPU time of the whole machine less this process's and its waited-for children's."""

    def __init__(self) -> None:
        self.busy, self.own, self.wall = _busy_cpu_seconds(), os.times(), time.perf_counter()

    def share(self) -> float | None:
        wall = time.perf_counter() - self.wall
        busy = _busy_cpu_seconds()
        if busy is None or self.busy is None or wall <= 0:
            return None
        own = sum(os.times()[:4]) - sum(self.own[:4])
        return max(0.0, (busy - self.busy - own) / wall / (os.cpu_count() or 1))


# --------------------------------------------------------------------------- running


def attempt(label: str, fn, *args, **kwargs) -> dict:
    """Run one benchmark; a failure becomes ``{"status": "not run", "reason": ...}``."""
    log(f"{label}: start")
    started = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # a broken or missing benchmark must not stop the report
        reason = f"{exc.__class__.__name__}: {exc}".strip()
        log(f"{label}: not run: {reason}")
        if not isinstance(exc, ImportError):
            traceback.print_exc(file=sys.stderr)
        return {"status": "not run", "reason": reason[:500],
                "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    log(f"{label}: done in {seconds:.0f} s")
    return {"status": "ok", "seconds": seconds, "result": result}


def _import(name: str):
    return importlib.import_module(name)


def _call_with_supported(fn, **kwargs):
    """Call ``fn`` with the keyword arguments its signature accepts (the others are dropped)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def edgekv_server_args() -> tuple[str, ...]:
    """Serve with encryption off when the server has the switch: Redis does not encrypt, and
    the crypto section measures what encryption costs."""
    help_text = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=60).stdout
    return ("--encryption", "no") if "--encryption" in help_text else ()


def run_server(cfg: dict, progress) -> dict:
    resp_vs_redis = _import("resp_vs_redis")
    missing = resp_vs_redis.check_tools()
    if missing:
        raise RuntimeError(missing)
    args = edgekv_server_args()
    return {
        "edgekv_args": list(args),
        "benchmark": attempt("server: redis-benchmark", resp_vs_redis.run, edgekv_args=args,
                             progress=progress, **cfg["server"]),
        "client": attempt("server: client workload", lambda: _import("client_workload").run(
            edgekv_args=args, progress=progress, **cfg["client"])),
        "profile": attempt("server: hot-path profile", lambda: _import("hotpath_profile").run(
            edgekv_args=args, progress=progress, **cfg["profile"])),
    }


def run_embedded(cfg: dict, progress) -> dict:
    return _import("embedded_peers").run(progress=progress, **cfg["embedded"])


def run_scale(cfg: dict, progress) -> dict:
    engine_bench = _import("engine_bench")
    sizes = []
    for n in cfg["scale"]["sizes"]:
        progress(f"scale: {n:,} keys: load, open, RSS per key")
        doc = engine_bench.run(n, phases=("open", "rss"))
        open_row = next(r for r in doc["rows"] if r["phase"] == "open")
        sizes.append({"keys": n, "open_s": open_row["value"], "open_cpu_s": open_row["cpu_value"],
                      "open_note": open_row["note"],
                      "rss_per_key_load": doc["rss_load"]["per_key"],
                      "rss_per_key_reopen": doc.get("rss_reopen", {}).get("per_key"),
                      "rss_peak_bytes": doc.get("rss_reopen", {}).get("peak"),
                      "index_estimate_per_key": doc["rss_load"]["breakdown"]["total_per_key"],
                      "index_breakdown": doc["rss_load"]["breakdown"]["per_key"],
                      "seconds": doc["seconds"]})
    progress(f"scale: compaction, {cfg['scale']['compaction_keys']:,} keys")
    compaction = attempt("scale: disk vs live bytes", _import("compaction_bench").run,
                         cfg["scale"]["compaction_keys"], log=progress)
    return {"sizes": sizes, "compaction": compaction, "engine_defaults": engine_defaults()}


def engine_defaults() -> dict:
    """``Store.open``'s keyword defaults that change what scale measures (encryption on or
    off, the compression threshold), as the engine declares them."""
    from engine import Store

    params = inspect.signature(Store.open).parameters
    return {name: params[name].default for name in ("fsync", "encryption",
                                                     "compression_threshold", "segment_bytes")
            if name in params}


def run_compaction(cfg: dict, progress) -> dict:
    module = _import("compaction_latency")
    return _call_with_supported(module.run, progress=progress, **cfg["compaction"])


def run_crypto(cfg: dict, progress) -> dict:
    module = _import("crypto_bench")
    return _call_with_supported(module.run, progress=progress, **cfg["crypto"])


RUNNERS = {"server": run_server, "embedded": run_embedded, "scale": run_scale,
           "compaction": run_compaction, "crypto": run_crypto}


# --------------------------------------------------------------------------- formatting


def num(v, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,} {unit}".rstrip()
    a = abs(v)
    text = (f"{v:,.0f}" if a >= 100 else f"{v:,.1f}" if a >= 10 else f"{v:,.2f}" if a >= 0.1
            else f"{v:.3f}")
    return f"{text} {unit}".rstrip()


def spread(values: list[float], unit: str = "") -> str:
    """``median (min–max)``; a single value alone."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return num(med, unit)
    return f"{num(med, unit)} ({num(min(values))}–{num(max(values))})"


def ratio_text(r) -> str:
    return "–" if r is None else f"{r:.2f}×"


def table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def size_label(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def keys_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}")


def not_run(part: dict | None) -> str | None:
    if part is None:
        return "not run: no results"
    if part.get("status") != "ok":
        return f"not run: {part.get('reason', 'unknown reason')}"
    return None


# --------------------------------------------------------------------------- comparisons


def comparison(section, what, edge_values, peer, peer_values, unit, higher_better=True):
    """One edgekv-vs-peer measurement: medians, spreads and how far behind edgekv is."""
    edge_values = [v for v in edge_values if v is not None]
    peer_values = [v for v in peer_values if v is not None]
    if not edge_values or not peer_values:
        return None
    e, p = statistics.median(edge_values), statistics.median(peer_values)
    if e <= 0 or p <= 0:
        return None
    factor = p / e if higher_better else e / p  # > 1: edgekv is behind
    if len(edge_values) < 2 or len(peer_values) < 2:
        clear = None  # one run a side: no spread to compare with
    elif higher_better:
        clear = max(edge_values) < min(peer_values)
    else:
        clear = min(edge_values) > max(peer_values)
    return {"section": section, "what": what, "edgekv": e, "edge_values": edge_values,
            "peer": peer, "peer_value": p, "peer_values": peer_values, "unit": unit,
            "higher_better": higher_better, "factor": factor, "clear": clear}


def server_comparisons(server: dict) -> list[dict]:
    out = []
    bench = server.get("benchmark", {})
    if bench.get("status") == "ok":
        runs = bench["result"]["runs"]
        cases = sorted({(r["fsync"], r["value_bytes"], r["pipeline"], r["test"]) for r in runs})
        for fsync, size, pipe, test in cases:
            def values(server_, key):
                return [r[key] for r in runs if (r["fsync"], r["value_bytes"], r["pipeline"],
                                                 r["test"], r["server"]) ==
                        (fsync, size, pipe, test, server_)]
            what = f"redis-benchmark {test} -P {pipe}, {size_label(size)}, fsync {fsync}"
            out.append(comparison("server", what + ": ops/s", values("edgekv", "rps"),
                                  "redis-server", values("redis", "rps"), "ops/s"))
            out.append(comparison("server", what + ": p99", values("edgekv", "p99"),
                                  "redis-server", values("redis", "p99"), "ms", False))
    client = server.get("client", {})
    if client.get("status") == "ok":
        runs = client["result"]["runs"]
        for fsync in sorted({r["fsync"] for r in runs}):
            def values(server_, key):
                return [r[key] for r in runs if (r["fsync"], r["server"], r["dialect"]) ==
                        (fsync, server_, "redis")]
            what = f"redis-py mix (GET/SET/SCAN), fsync {fsync}"
            out.append(comparison("server", what + ": ops/s", values("edgekv", "ops_per_s"),
                                  "redis-server", values("redis", "ops_per_s"), "ops/s"))
            out.append(comparison("server", what + ": p99", values("edgekv", "p99_ms"),
                                  "redis-server", values("redis", "p99_ms"), "ms", False))
            out.append(comparison("server", what + ": p99.9", values("edgekv", "p999_ms"),
                                  "redis-server", values("redis", "p999_ms"), "ms", False))
    return [c for c in out if c]


EMBEDDED_METRICS = (("put_always", "put, durability always"),
                    ("put_everysec", "put, durability everysec"),
                    ("get", "get"), ("list_pages", "list 1,000-key pages"))


def embedded_comparisons(result: dict) -> list[dict]:
    out = []
    runs = result["runs"]
    stores = [s for s in result["summary"] if s != "edgekv"]
    for metric, label in EMBEDDED_METRICS:
        edge = [r[metric] for r in runs if r["store"] == "edgekv" and metric in r]
        for store in stores:
            peer = [r[metric] for r in runs if r["store"] == store and metric in r]
            level = "always" if metric == "put_always" else "everysec"
            name = result["summary"][store].get(f"label_{level}", store)
            out.append(comparison("embedded", f"in process: {label}", edge, name, peer,
                                  "ops/s" if metric != "list_pages" else "pages/s"))
    return [c for c in out if c]


def compaction_p99s(result: dict) -> tuple[float | None, float | None]:
    """(idle p99, p99 during compaction) in ms: flat keys or ``idle``/``during_compaction``."""
    idle = result.get("idle_p99_ms") or (result.get("idle") or {}).get("p99_ms")
    busy = result.get("compaction_p99_ms") or \
        (result.get("during_compaction") or {}).get("p99_ms")
    return idle, busy


def compaction_comparisons(result: dict) -> list[dict]:
    idle, busy = compaction_p99s(result)
    if not idle or not busy:
        return []
    c = comparison("compaction", "GET p99 while compaction runs", [busy],
                   "edgekv, not compacting", [idle], "ms", False)
    return [c] if c else []


# --------------------------------------------------------------------------- crypto rows


CRYPTO_CONFIGS = ("plain", "encrypted+compressed")


def crypto_workloads(result: dict) -> list[dict]:
    """One row per workload of ``crypto_bench.run``: ops/s plain and encrypted+compressed."""
    rows = []
    for name, w in (result.get("workloads") or {}).items():
        if not isinstance(w, dict):
            continue
        row = {"workload": name, "compression_ratio": w.get("compression_ratio"),
               "disk_ratio_vs_plain": w.get("disk_ratio_vs_plain")}
        for config in CRYPTO_CONFIGS:
            for op in ("put", "get"):
                row[f"{op} {config}"] = (w.get(config) or {}).get(f"{op}_per_s")
        rows.append(row)
    return rows


def crypto_comparisons(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        for op in ("put", "get"):
            out.append(comparison("crypto", f"{op}, encrypted+compressed, {row['workload']}",
                                  [row[f"{op} encrypted+compressed"]], "edgekv, plain",
                                  [row[f"{op} plain"]], "ops/s"))
    return [c for c in out if c]


def scalar_items(result: dict) -> list[tuple[str, object]]:
    return [(k, v) for k, v in result.items()
            if isinstance(v, (int, float, str, bool)) or v is None]


def cell(v) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return str(v)
    return num(v)


# --------------------------------------------------------------------------- rendering


class Report:
    """Builds the markdown and the figures from the combined results document."""

    def __init__(self, doc: dict, out_dir: Path) -> None:
        self.doc = doc
        self.out_dir = out_dir
        self.fig_dir = out_dir / "benchmarks"
        self.lines: list[str] = []
        self.comparisons: list[dict] = []
        self.figures: list[str] = []
        try:
            import report_plots

            self.plots = report_plots
            self.plot_error = None
        except ImportError as exc:
            self.plots = None
            self.plot_error = f"{exc.__class__.__name__}: {exc}"

    # helpers
    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure(self, name: str, data, alt: str) -> None:
        """Draw with ``report_plots.<name>`` and link the PNG; a failure is said, not fatal."""
        if self.plots is None:
            self.add(f"*Figure not drawn: {self.plot_error} (`pip install -e '.[bench]'`).*", "")
            return
        try:
            path = getattr(self.plots, name)(data, self.fig_dir)
        except Exception as exc:  # a figure must not lose the tables
            self.add(f"*Figure not drawn: {exc.__class__.__name__}: {exc}*", "")
            traceback.print_exc(file=sys.stderr)
            return
        if path is not None:
            rel = path.relative_to(self.out_dir).as_posix()
            self.figures.append(rel)
            self.add(f"![{alt}]({rel})", "")

    def section_header(self, title: str, name: str) -> dict | None:
        self.add(f"## {title}", "")
        sec = self.doc["sections"].get(name)
        if sec is None:
            self.add(f"Not run: this section has not been measured yet "
                     f"(`python bench/report.py --only {name}`).", "")
            return None
        stamp = f"Measured {sec['ran_at']}" + (" with `--quick`" if sec.get("quick") else "") \
            + f" in {sec['seconds']:.0f} s"
        if sec.get("other_cpu_share") is not None:
            stamp += (f"; other processes used {sec['other_cpu_share']:.0%} of the machine's "
                      f"CPU meanwhile")
        stamp += "."
        if sec.get("ran_at") != self.doc["meta"]["ran_at"]:
            stamp += " (From an earlier run than the rest of this page.)"
        self.add(stamp, "")
        why = not_run(sec)
        if why:
            self.add(why[0].upper() + why[1:] + ".", "")
            return None
        return sec["result"]

    # the document
    def render(self) -> str:
        meta = self.doc["meta"]
        body_start = len(self.lines)
        self.render_server()
        self.render_embedded()
        self.render_scale()
        self.render_compaction()
        self.render_crypto()
        body = self.lines[body_start:]
        self.lines = self.lines[:body_start]
        self.add("# Benchmarks", "",
                 "edgekv measured beside its peers in one run, on one machine. Regenerate with "
                 "`python bench/report.py` (one section: `--only "
                 "server|embedded|scale|compaction|crypto`). Every comparison alternates A/B "
                 "between rounds; cells give the **median (min–max)** over the rounds. The "
                 "machine is shared and noisy: compare within this page, not across pages.", "")
        self.render_machine(meta)
        self.render_headline()
        self.render_behind()
        self.lines.extend(body)
        return "\n".join(self.lines).rstrip() + "\n"

    def render_machine(self, meta: dict) -> None:
        m = meta["machine"]
        mem = f"{m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else "?"
        load = meta.get("loadavg_end") or m.get("loadavg_start")
        rows = [["cores", str(m["cores"])], ["CPU", m["cpu_model"]], ["memory", mem],
                ["kernel", f"{m['kernel']} ({m['machine']})"], ["OS", m["os"]],
                ["Python", m["python"]]]
        rows += [[k, v or "not installed"] for k, v in m["versions"].items()]
        rows.append(["command", f"`{meta['command']}`"])
        rows.append(["run", f"{meta['ran_at']}, {meta['seconds']:.0f} s"])
        sections = self.doc["sections"]
        if any(sec.get("ran_at") != meta["ran_at"] for sec in sections.values()):
            rows.append(["sections", "measured in separate runs: " + ", ".join(
                f"{name} {sec.get('ran_at', '?')} ({sec.get('seconds', 0):.0f} s)"
                for name, sec in sections.items())])
        if meta.get("other_cpu_share") is not None:
            rows.append(["other load", f"other processes used {meta['other_cpu_share']:.0%} of "
                                       f"the machine's CPU during the latest run; load average "
                                       f"{' / '.join(f'{x:.2f}' for x in load)} at the end"])
        self.add("## Machine", "", table(["", ""], rows, "ll"), "")

    def render_headline(self) -> None:
        rows = []
        for c in self.headline_picks():
            rows.append([c["what"], num(c["edgekv"], c["unit"]), c["peer"],
                         num(c["peer_value"], c["unit"]),
                         f"{c['edgekv'] / c['peer_value']:.2f}×"])
        for label, value in self.headline_facts():
            rows.append([label, value, "", "", ""])
        self.add("## Headline", "")
        if not rows:
            self.add("No section has results yet.", "")
            return
        self.add(table(["measurement", "edgekv", "peer", "peer value", "edgekv / peer"], rows,
                       "lrlrr"), "",
                 "For ops/s a ratio below 1 means edgekv is slower; for latencies a ratio above "
                 "1 means edgekv is slower.", "")

    def headline_picks(self) -> list[dict]:
        picks = []
        wanted = [
            "redis-benchmark SET -P 1, 100 B, fsync everysec: ops/s",
            "redis-benchmark GET -P 1, 100 B, fsync everysec: ops/s",
            "redis-benchmark SET -P 16, 100 B, fsync everysec: ops/s",
            "redis-benchmark GET -P 16, 100 B, fsync everysec: ops/s",
            "redis-benchmark SET -P 1, 100 B, fsync always: ops/s",
            "redis-py mix (GET/SET/SCAN), fsync everysec: ops/s",
            "redis-py mix (GET/SET/SCAN), fsync everysec: p99",
        ]
        by_what = {}
        for c in self.comparisons:
            by_what.setdefault(c["what"], []).append(c)
        for w in wanted:
            picks.extend(by_what.get(w, [])[:1])
        # embedded: against SQLite at the same level, and the best peer for reads
        for metric, label in EMBEDDED_METRICS:
            group = by_what.get(f"in process: {label}", [])
            sqlite = [c for c in group if c["peer"].startswith("SQLite")]
            best = max(group, key=lambda c: c["peer_value"], default=None)
            for c in (sqlite[:1] + ([best] if best and best not in sqlite[:1] else [])):
                picks.append(c)
        picks.extend(by_what.get("GET p99 while compaction runs", []))
        return picks

    def headline_facts(self) -> list[tuple[str, str]]:
        facts = []
        scale = self.result("scale")
        if scale:
            for s in scale["sizes"]:
                facts.append((f"open {keys_label(s['keys'])} keys (hints + active segment scan)",
                              num(s["open_s"], "s")))
                facts.append((f"RSS per key at {keys_label(s['keys'])} keys (after reopen)",
                              num(s["rss_per_key_reopen"], "B")))
            comp = scale.get("compaction", {})
            if comp.get("status") == "ok":
                r = comp["result"]
                facts.append((f"disk / live bytes after compaction ({keys_label(r['keys'])} keys)",
                              f"{r['disk_live_ratio']:.2f}"))
        return facts

    def result(self, name: str):
        sec = self.doc["sections"].get(name)
        return sec["result"] if sec and sec.get("status") == "ok" else None

    def render_behind(self) -> None:
        self.add("## Where edgekv is behind", "")
        behind = sorted((c for c in self.comparisons if c["factor"] >= BEHIND_FACTOR),
                        key=lambda c: c["factor"], reverse=True)
        total = len(self.comparisons)
        if not total:
            self.add("No comparison has been measured yet.", "")
        elif not behind:
            self.add(f"In none of the {total} comparisons on this page is edgekv more than "
                     f"{BEHIND_FACTOR - 1:.0%} behind its peer.", "")
        else:
            ahead = sum(1 for c in self.comparisons if c["factor"] <= 1 / BEHIND_FACTOR)
            clear = sum(1 for c in behind if c["clear"] is True)
            self.add(f"Computed from the medians below: edgekv is more than "
                     f"{BEHIND_FACTOR - 1:.0%} behind in **{len(behind)} of {total}** "
                     f"comparisons ({clear} of them clearly, i.e. edgekv's best round is worse "
                     f"than the peer's worst), and more than {BEHIND_FACTOR - 1:.0%} ahead in "
                     f"{ahead}.", "")
            for name in SECTIONS:
                mine = [c for c in self.comparisons if c["section"] == name]
                late = sorted((c for c in behind if c["section"] == name),
                              key=lambda c: c["factor"])
                if not mine:
                    continue
                if not late:
                    self.add(f"* **{name}**: not behind in any of its {len(mine)} comparisons.")
                    continue
                worst = late[-1]
                self.add(f"* **{name}**: behind in {len(late)} of {len(mine)}; the gap's median "
                         f"is {statistics.median(c['factor'] for c in late):.2f}×, the largest "
                         f"{worst['factor']:.2f}× ({worst['what']}, against {worst['peer']}).")
            shown = behind[:BEHIND_ROWS]
            self.add("", "The largest gaps:" if len(shown) < len(behind) else
                     "Every gap, largest first:", "")
            rows = []
            for c in shown:
                verb = "slower" if c["higher_better"] else "higher"
                rows.append([c["what"], c["peer"], spread(c["edge_values"], c["unit"]),
                             spread(c["peer_values"], c["unit"]),
                             f"{c['factor']:.2f}× {verb}",
                             {True: "yes", False: "no", None: "one run"}[c["clear"]]])
            self.add(table(["measurement", "peer", "edgekv", "peer value", "edgekv is",
                            "beyond noise"], rows, "llrrrl"), "")
            if len(shown) < len(behind):
                rest = behind[len(shown):]
                self.add(f"{len(rest)} smaller gaps ({rest[-1]['factor']:.2f}×–"
                         f"{rest[0]['factor']:.2f}×) are in the section tables below.", "")
        self.render_targets()
        self.render_profile()

    def render_targets(self) -> None:
        scale = self.result("scale")
        if not scale:
            return
        misses = []
        for s in scale["sizes"]:
            if s["keys"] >= 1_000_000 and s.get("rss_per_key_reopen") and \
                    s["rss_per_key_reopen"] > 150:
                misses.append(f"RSS per key at {keys_label(s['keys'])} keys is "
                              f"{s['rss_per_key_reopen']:.0f} B, above the 150 B target")
        comp = scale.get("compaction", {})
        if comp.get("status") == "ok":
            r = comp["result"]
            if r["disk_live_ratio"] > 1.3:
                misses.append(f"disk bytes are {r['disk_live_ratio']:.2f}× live bytes after "
                              f"compaction, above the 1.3× target")
            if r["open_hints_s"] > 1.0:
                misses.append(f"reopening {keys_label(r['keys'])} compacted keys takes "
                              f"{r['open_hints_s']:.2f} s, above the 1 s target")
        if misses:
            self.add("Targets missed: " + "; ".join(misses) + ".", "")

    def render_profile(self) -> None:
        server = self.result("server")
        prof = (server or {}).get("profile", {})
        self.add("### The hot path", "")
        if not server or prof.get("status") != "ok":
            why = not_run(prof) if server else "the server section has not run"
            self.add(f"No profile: {why}.", "")
            return
        result = prof["result"]
        if result.get("note"):
            self.add(f"*{result['note']}.*", "")
        for p in result["profiles"]:
            where = p["target"] + (f" under `{p['load']}`" if p.get("load") else "")
            samples = f", {p['samples']:,} samples" if p.get("samples") else ""
            self.add(f"**{p['tool']}**, {where}{samples}. Share of the busy samples by layer: "
                     + layer_shares(p["self"]) + ".", "")
            rows = []
            for i in range(max(len(p["self"]), len(p["inclusive"]))):
                s = p["self"][i] if i < len(p["self"]) else ("", None)
                c = p["inclusive"][i] if i < len(p["inclusive"]) else ("", None)
                rows.append([f"`{s[0]}`" if s[0] else "", f"{s[1]:.1%}" if s[1] else "",
                             f"`{c[0]}`" if c[0] else "", f"{c[1]:.1%}" if c[1] else ""])
            self.add(table(["self (innermost frame)", "share", "inclusive (on the stack)",
                            "share"], rows[:12], "lrlr"), "")
        self.add("Time in C (uvloop's loop and `epoll`, hiredis, system calls such as `write` "
                 "and `send`) is charged to the nearest Python frame, so `Store.put_one` "
                 "includes its `pwrite` and `RespConnection._write_now` its `send`. py-spy "
                 "samples in blocking mode, which over-reports system calls; confirm any change "
                 "with a timed A/B run.", "")

    # sections
    def render_server(self) -> None:
        result = self.section_header("Server, over loopback", "server")
        if result is None:
            return
        args = " ".join(result.get("edgekv_args") or []) or "(defaults)"
        self.add(f"Both servers run on this machine with fresh data directories: "
                 f"`edgekv serve --fsync MODE {args}` and `redis-server --appendonly yes "
                 f"--appendfsync MODE --save ''`. The modes match one to one: `always` "
                 f"acknowledges a write after its fsync (group commit in both), `everysec` "
                 f"fsyncs once a second, `no` leaves it to the OS. edgekv runs with encryption "
                 f"off here, since Redis does not encrypt; the crypto section gives its cost. "
                 f"Everything else is at `serve`'s defaults, background compaction included "
                 f"(it may run during a SET-heavy run, as it would in production), and so is "
                 f"the 64 MiB read cache, which every SET fills (Redis, for comparison, holds "
                 f"every value in memory).", "")
        self.comparisons.extend(server_comparisons(result))
        self.render_redis_benchmark(result.get("benchmark"))
        self.render_client(result.get("client"))

    def render_redis_benchmark(self, part) -> None:
        self.add("### redis-benchmark", "")
        why = not_run(part)
        if why:
            self.add(why + ".", "")
            return
        r = part["result"]
        runs = r["runs"]
        req = r["requests"]
        req_text = (", ".join(f"-n {n:,} at -P {p}" for p, n in req.items())
                    if isinstance(req, dict) else f"-n {req:,}")
        self.add(f"`redis-benchmark -t set,get -r 100000 -c {r['clients']} -d SIZE -P PIPE "
                 f"--csv`, {req_text}; {r['rounds']} rounds, the order of the two servers "
                 f"alternating. Server CPU is the server process's user+system time per "
                 f"request over the SET and GET parts of a run together (it varies less with "
                 f"the machine's load than ops/s).", "")
        if any(x["server"] == "bare" for x in runs):
            self.add("\"bare\" is `bench/bare_resp_server.py`, run in the same rounds: asyncio "
                     "with uvloop, hiredis and a dict, answering GET and SET and nothing else "
                     "(no durability, no limits, no KV semantics). It is the floor for any "
                     "Python server on this machine, so `edgekv / bare` is what edgekv's own "
                     "work costs, and `bare / redis` what Python costs before edgekv does "
                     "anything.", "")
        cases = sorted({(r_["fsync"], r_["value_bytes"], r_["pipeline"], r_["test"])
                        for r_ in runs}, key=lambda c: (("no", "everysec", "always").index(c[0])
                                                        if c[0] in ("no", "everysec", "always")
                                                        else 9, c[1], c[2], c[3] != "SET"))
        rows = []
        for fsync, size, pipe, test in cases:
            def vals(server, key):
                return [x[key] for x in runs if (x["fsync"], x["value_bytes"], x["pipeline"],
                                                 x["test"], x["server"]) ==
                        (fsync, size, pipe, test, server)]
            e, rd = vals("edgekv", "rps"), vals("redis", "rps")
            ratio = statistics.median(e) / statistics.median(rd) if e and rd else None
            p99e, p99r = vals("edgekv", "p99"), vals("redis", "p99")
            cpue = [v for v in vals("edgekv", "cpu_us_per_op") if v is not None]
            cpur = [v for v in vals("redis", "cpu_us_per_op") if v is not None]
            bare = vals("bare", "rps")
            bare_cells = ([spread(bare), ratio_text(statistics.median(e) /
                                                   statistics.median(bare) if e else None)]
                          if bare else ["–", "–"])
            rows.append([fsync, size_label(size), str(pipe), test, spread(rd), spread(e),
                         ratio_text(ratio), *bare_cells,
                         num(statistics.median(vals("redis", "p50"))),
                         num(statistics.median(vals("edgekv", "p50"))), spread(p99r),
                         spread(p99e),
                         num(statistics.median(cpur)) if cpur else "–",
                         num(statistics.median(cpue)) if cpue else "–"])
        self.add(table(["fsync", "value", "-P", "test", "redis ops/s", "edgekv ops/s",
                        "edgekv / redis", "bare ops/s", "edgekv / bare", "redis p50 ms",
                        "edgekv p50 ms", "redis p99 ms", "edgekv p99 ms", "redis CPU µs/op",
                        "edgekv CPU µs/op"], rows, "lrrlrrrrrrrrrrr"), "")
        self.figure("server_throughput", r, "redis-benchmark throughput per fsync mode")

    def render_client(self, part) -> None:
        self.add("### Python client workload (redis-py)", "")
        why = not_run(part)
        if why:
            self.add(why + ".", "")
            return
        r = part["result"]
        mix = r["mix"]
        self.add(f"{r['clients']} client processes for {r['seconds']:.0f} s per run over "
                 f"{r['keys']:,} preloaded keys of {r['value_bytes']} B: "
                 f"{mix['get']:.0%} get, {mix['put']:.0%} put with metadata, "
                 f"{mix['list']:.0%} list of a {r['list_page']}-key page; latency taken in the "
                 f"client around each call, so it includes redis-py itself.", "",
                 "**The two servers are not asked the same thing in every row.** Redis has no "
                 "metadata and no ordered listing, so the like-for-like rows send "
                 "`GET`, `SET` (metadata dropped) and `SCAN … MATCH user:* COUNT 100` to both; "
                 "the `KV.*` rows send edgekv what a Workers KV application needs "
                 "(`KV.GET … WITHMETADATA`, `KV.PUT … METADATA`, `KV.LIST PREFIX … LIMIT 100`, "
                 "ordered and with metadata), which Redis cannot answer.", "")
        order = {"no": 0, "everysec": 1, "always": 2}
        rows = []
        labels = {("redis", "redis"): "redis-server, GET/SET/SCAN",
                  ("edgekv", "redis"): "edgekv, GET/SET/SCAN",
                  ("edgekv", "kv"): "edgekv, KV.GET/PUT/LIST"}
        summary = sorted(r["summary"], key=lambda s: (order.get(s["fsync"], 9),
                                                       list(labels).index((s["server"],
                                                                           s["dialect"]))))
        base = {s["fsync"]: s["ops_per_s"] for s in summary
                if (s["server"], s["dialect"]) == ("redis", "redis")}
        for s in summary:
            runs = [x for x in r["runs"] if (x["fsync"], x["server"], x["dialect"]) ==
                    (s["fsync"], s["server"], s["dialect"])]
            rel = s["ops_per_s"] / base[s["fsync"]] if base.get(s["fsync"]) else None
            rows.append([s["fsync"], labels[(s["server"], s["dialect"])],
                         spread([x["ops_per_s"] for x in runs]), ratio_text(rel),
                         spread([x["p50_ms"] for x in runs]), spread([x["p99_ms"] for x in runs]),
                         spread([x["p999_ms"] for x in runs])])
        self.add(table(["fsync", "server, commands", "ops/s", "vs redis", "p50 ms", "p99 ms",
                        "p99.9 ms"], rows, "llrrrrr"), "")
        self.figure("server_latency_cdf", r, "client workload latency CDF")

    def render_embedded(self) -> None:
        result = self.section_header("Embedded, in process", "embedded")
        if result is None:
            return
        self.comparisons.extend(embedded_comparisons(result))
        self.add(f"The same workload through each store's Python API in one process: "
                 f"{result['keys']:,} keys loaded, then for {result['seconds']:g} s each: puts "
                 f"of new keys (one put = one transaction) at each durability level, random "
                 f"gets, and pages of 1,000 keys with their metadata at random prefixes. Keys "
                 f"20 B, values {result['value_bytes']} B, metadata a small JSON object. "
                 f"{result['rounds']} rounds, the stores' order alternating.", "",
                 "Durability, level by level (everysec: a process crash loses nothing, a power "
                 "cut about the last second):", "",
                 table(["level", "edgekv", "SQLite (WAL)", "LMDB", "diskcache"], [
                     ["always", '`fsync="always"`', "`synchronous=FULL`", "`sync=True`",
                      "`sqlite_synchronous=2` (FULL)"],
                     ["everysec", '`fsync="everysec"`', "`synchronous=NORMAL`",
                      "`sync=False` + `env.sync()` every second", "`sqlite_synchronous=1` "
                      "(NORMAL)"]], "lllll"), "",
                 "The SQLite table is shaped like Miniflare's `_mf_entries` (key primary key, "
                 "expiration, metadata JSON) with the value inline. LMDB stores metadata in "
                 "front of the value. diskcache has no ordered range read, so no list row. "
                 "edgekv runs with encryption off, like its peers.", "")
        rows = []
        for store, s in result["summary"].items():
            def vals(metric):
                return [r[metric] for r in result["runs"] if r["store"] == store and metric in r]
            name = s.get("label_everysec", store)
            if store in ("sqlite", "diskcache"):
                name = f"{s['label_always']} / {s['label_everysec'].split()[-1]}"
            if store == "lmdb":
                name = "LMDB sync=True / False"
            rows.append([name, spread(vals("put_always")), spread(vals("put_everysec")),
                         spread(vals("get")), spread(vals("list_pages"))])
        self.add(table(["store", "put/s, always", "put/s, everysec", "get/s", "list pages/s"],
                       rows), "")
        for store, why in (result.get("skipped") or {}).items():
            self.add(f"{store}: not run: {why}.", "")
        edge = result["summary"].get("edgekv", {})
        ratio_rows = []
        for store, s in result["summary"].items():
            if store == "edgekv":
                continue
            cells = []
            for metric, _ in EMBEDDED_METRICS:
                if metric in s and metric in edge:
                    cells.append(ratio_text(edge[metric]["median"] / s[metric]["median"]))
                else:
                    cells.append("–")
            ratio_rows.append([f"edgekv / {store}"] + cells)
        if ratio_rows:
            self.add(table(["ratio of medians", "put, always", "put, everysec", "get",
                            "list pages"], ratio_rows), "")
        self.figure("embedded_ops", result, "embedded ops/s")

    def render_scale(self) -> None:
        result = self.section_header("Scale", "scale")
        if result is None:
            return
        self.add("`bench/engine_bench.py --only open,rss` at each size: keys of 20 B and values "
                 "of 100 B written in scrambled order at `fsync=\"no\"`, then the store reopened "
                 "(after the background hint writer has finished: hint files for the sealed "
                 "segments, a scan of the active one; page cache warm; the open cell's note "
                 "in the JSON says how many of each). RSS per key is measured in "
                 "fresh child processes (RSS after `gc.collect()` minus the RSS of an empty "
                 "store, over N), once after writing N keys and once after reopening them, "
                 "with the read cache off: it is a fixed budget (64 MiB by default) that puts "
                 "and gets fill, not a cost per key. Otherwise the engine runs with its "
                 "defaults" + defaults_text(result) + ".", "")
        rows = []
        for s in result["sizes"]:
            rows.append([f"{s['keys']:,}", num(s["open_s"], "s"), num(s["open_cpu_s"], "s"),
                         num(s["rss_per_key_load"], "B"), num(s["rss_per_key_reopen"], "B"),
                         num(s["index_estimate_per_key"], "B"),
                         num((s.get("rss_peak_bytes") or 0) / 2**20, "MiB")])
        self.add(table(["keys", "open", "open, CPU", "RSS/key after puts",
                        "RSS/key after reopen", "getsizeof estimate/key", "peak RSS (reopen)"],
                       rows), "")
        self.figure("scale", result, "open time and RSS per key")
        comp = result.get("compaction")
        self.add("### Disk bytes vs live bytes", "")
        why = not_run(comp)
        if why:
            self.add(why + ".", "")
            return
        r = comp["result"]
        self.add(f"`bench/compaction_bench.py` with {r['keys']:,} keys: write, overwrite all "
                 f"twice, compact, delete half, compact, at the engine's defaults (encryption "
                 f"{'on' if r.get('encrypted') else 'off'}). Live bytes are what the live "
                 f"records need as stored (32 B header, 6 B payload prefix, key, value"
                 f"{', 28 B of nonce and tag' if r.get('encrypted') else ''}).", "")
        rows = [[s["stage"], f"{s['live_keys']:,}", num(s["disk_bytes"] / 1e6, "MB"),
                 num(s["hint_bytes"] / 1e6, "MB"), num(s["live_bytes"] / 1e6, "MB"),
                 f"{s['disk_bytes'] / s['live_bytes']:.2f}"] for s in r["stages"]]
        self.add(table(["stage", "live keys", "segments", "hints", "live", "disk / live"], rows),
                 "")
        self.add(table(["step", "seconds"], [
            ["write N, overwrite twice", num(r["write_s"])],
            [f"open {3 * r['keys']:,} records (full scan)", num(r["open_scan_s"])],
            ["compact", num(r["compact_s"])],
            [f"open {r['keys']:,} keys after compaction (hint files)", num(r["open_hints_s"])],
            ["compact after deleting half", num(r["compact_half_s"])]]), "")
        self.figure("disk_vs_live", r, "disk bytes vs live bytes")

    def render_compaction(self) -> None:
        result = self.section_header("Latency while compaction runs", "compaction")
        if result is None:
            return
        self.comparisons.extend(compaction_comparisons(result))
        self.add(f"`bench/compaction_latency.py`: a server (`--fsync everysec`) holding "
                 f"{result.get('keys', 0):,} keys, each overwritten so most bytes on disk are "
                 f"dead; GETs of random keys one at a time, first with the store idle, then "
                 f"while it compacts (a new compaction starts whenever one ends).", "")
        phases = [(label, result[key]) for label, key in (("idle", "idle"),
                                                          ("during compaction",
                                                           "during_compaction"))
                  if isinstance(result.get(key), dict)]
        if phases:
            cols = [k for k in ("count", "p50_ms", "p99_ms", "p999_ms", "max_ms")
                    if k in phases[0][1]]
            self.add(table(["GET latency"] + [c.replace("_ms", " ms").replace("p999", "p99.9")
                                              for c in cols],
                           [[label] + [cell(stats.get(c)) for c in cols]
                            for label, stats in phases]), "")
        idle, busy = compaction_p99s(result)
        if idle and busy:
            target = result.get("target_ratio")
            self.add(f"p99 while compacting is **{busy / idle:.2f}×** the idle p99"
                     + (f" (target at most {target:g}×)" if target else "") + ".", "")
        rows = [[k, cell(v)] for k, v in scalar_items(result)
                if k not in ("p99_ratio", "target_ratio")]
        if isinstance(result.get("compaction_seconds"), list):
            rows.append(["compaction_seconds",
                         ", ".join(num(x) for x in result["compaction_seconds"]) or "–"])
        self.add(table(["setting or measurement", "value"], rows, "lr"), "")
        self.figure("compaction_timeline", result, "p99 over time while compaction runs")

    def render_crypto(self) -> None:
        result = self.section_header("Encryption and compression", "crypto")
        if result is None:
            return
        rows = crypto_workloads(result)
        self.comparisons.extend(crypto_comparisons(rows))
        self.add(f"`bench/crypto_bench.py`: {result.get('values', 0):,} values per workload into "
                 f"a fresh store, plain (`encryption=False, compression_threshold=0`) against "
                 f"the defaults (AES-256-GCM, zstd for large values), alternating for "
                 f"{result.get('rounds', '?')} rounds at `fsync=\"{result.get('fsync', '?')}\"`; "
                 f"it reports the best round of each, per CPU second of the process. Both run "
                 f"with the read cache off, so every get opens its record: with it on (the "
                 f"default) a get of a value put or read recently costs the same sealed or "
                 f"plain. The compression ratio is value bytes over segment bytes.", "")
        if not rows:
            self.add("The result has no `workloads`; its fields:", "",
                     table(["field", "value"], [[k, cell(v)] for k, v in scalar_items(result)],
                           "lr"), "")
            return
        table_rows = []
        for r in rows:
            cells = [r["workload"]]
            for op in ("put", "get"):
                plain, sealed = r[f"{op} plain"], r[f"{op} encrypted+compressed"]
                cells += [num(plain), num(sealed),
                          ratio_text(sealed / plain if plain and sealed else None)]
            cells += [num(r["compression_ratio"]), num(r["disk_ratio_vs_plain"])]
            table_rows.append(cells)
        self.add(table(["workload", "put/s plain", "put/s sealed", "ratio", "get/s plain",
                        "get/s sealed", "ratio", "compression", "disk, plain / sealed"],
                       table_rows), "")
        self.figure("crypto", rows, "encryption and compression on vs off")


def defaults_text(scale: dict) -> str:
    d = scale.get("engine_defaults") or {}
    parts = []
    if "encryption" in d:
        parts.append(f"encryption {'on' if d['encryption'] else 'off'}")
    if "compression_threshold" in d:
        parts.append(f"compression from {d['compression_threshold']:,} B values")
    return f" ({', '.join(parts)})" if parts else ""


def layer_shares(top: list) -> str:
    """Group a profile's top self frames by layer: engine/, server/, and the rest."""
    layers = {"engine": 0.0, "server": 0.0, "other (event loop, stdlib, C)": 0.0}
    for name, share in top:
        if "(engine/" in name:
            layers["engine"] += share
        elif "(server/" in name:
            layers["server"] += share
        else:
            layers["other (event loop, stdlib, C)"] += share
    return ", ".join(f"{k} {v:.0%}" for k, v in layers.items()) + " (of the top frames)"


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="small sizes, short runs (smoke test)")
    p.add_argument("--scale-5m", action="store_true", help="scale section also at 5M keys")
    p.add_argument("--out", type=Path, default=REPO / "docs",
                   help="directory for benchmarks.md and benchmarks/*.png (default docs/)")
    p.add_argument("--json", type=Path,
                   help="raw results (default bench/results/report.json; with --out, "
                        "OUT/report.json)")
    p.add_argument("--render-only", action="store_true",
                   help="measure nothing: redraw the page and figures from the --json file")
    args = p.parse_args(argv)
    sections = list(SECTIONS)
    if args.only:
        sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    args.sections = sections
    if args.json is None:
        default_out = args.out.resolve() == (REPO / "docs").resolve()
        args.json = REPO / "bench" / "results" / "report.json" if default_out \
            else args.out / "report.json"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render_only:
        doc = json.loads(args.json.read_text())
        return write_report(doc, args.out)
    cfg = {k: dict(v) for k, v in (QUICK if args.quick else FULL).items()}
    if args.scale_5m:
        cfg["scale"]["sizes"] = tuple(cfg["scale"]["sizes"]) + (5_000_000,)
    doc = {"sections": {}}
    if args.only and args.json.exists():
        try:
            doc = json.loads(args.json.read_text())
            doc.setdefault("sections", {})
            log(f"keeping the other sections from {args.json}")
        except (OSError, ValueError) as exc:
            log(f"cannot read {args.json} ({exc}); starting afresh")
    ran_at = time.strftime("%Y-%m-%d %H:%M %Z")
    machine = machine_info()
    started = time.perf_counter()
    whole = OtherLoad()
    for name in args.sections:
        load = OtherLoad()
        part = attempt(name, RUNNERS[name], cfg, log)
        part.update({"ran_at": ran_at, "quick": args.quick, "other_cpu_share": load.share()})
        doc["sections"][name] = part
    seconds = time.perf_counter() - started
    other_share = whole.share()
    doc["meta"] = {"ran_at": ran_at, "seconds": seconds, "machine": machine,
                   "command": "python bench/report.py" + (f" {' '.join(sys.argv[1:])}"
                                                          if argv is None else
                                                          f" {' '.join(argv)}"),
                   "other_cpu_share": other_share, "loadavg_end": os.getloadavg(),
                   "quick": args.quick, "config": {k: {kk: (list(vv) if isinstance(vv, tuple)
                                                            else vv) for kk, vv in v.items()}
                                                   for k, v in cfg.items()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    log(f"raw results: {args.json}")

    write_report(doc, args.out)
    for name in args.sections:
        sec = doc["sections"][name]
        log(f"  {name:10} {sec['status']:8} {sec['seconds']:6.0f} s")
    return 0


def write_report(doc: dict, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    report = Report(json.loads(json.dumps(doc, default=str)), out)
    md_path = out / "benchmarks.md"
    md_path.write_text(report.render())
    log(f"wrote {md_path} and {len(report.figures)} figures under {report.fig_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
