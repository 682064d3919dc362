"""The figures of ``docs/benchmarks.md``: one function per figure, each from its section's dict.

Every function takes the section's results and the output directory, writes one PNG and returns
its path, or returns None when the results hold nothing to draw.  matplotlib runs headless
(the Agg backend); nothing here measures anything.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"edgekv": "#d62728", "redis": "#1f77b4", "sqlite": "#2ca02c", "lmdb": "#9467bd",
          "diskcache": "#8c564b", "bare": "#7f7f7f"}
MODES = ("no", "everysec", "always")


def _save(fig, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(ax, labels, series: dict, *, log=True, ylabel=""):
    """Grouped bars with min-max error bars: series = {name: [(median, lo, hi) | None]}."""
    n = max(len(series), 1)
    width = 0.8 / n
    for j, (name, cells) in enumerate(series.items()):
        xs, ys, lo, hi = [], [], [], []
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            med, mn, mx = cell
            xs.append(i + (j - (n - 1) / 2) * width)
            ys.append(med)
            lo.append(med - mn)
            hi.append(mx - med)
        spread = [lo, hi] if any(lo) or any(hi) else None
        ax.bar(xs, ys, width, yerr=spread, capsize=2, label=name,
               color=COLORS.get(name.split()[0].lower()), alpha=0.85 if j % 2 else 1.0)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def server_throughput(section: dict, out_dir: Path) -> Path | None:
    """redis-benchmark ops/s per fsync mode, edgekv beside redis-server."""
    runs = section.get("runs") or []
    if not runs:
        return None
    modes = [m for m in MODES if any(r["fsync"] == m for r in runs)]
    cases = sorted({(r["value_bytes"], r["pipeline"], r["test"]) for r in runs},
                   key=lambda c: (c[0], c[1], c[2] != "SET"))
    fig, axes = plt.subplots(1, len(modes), figsize=(max(7, 5 * len(modes)), 4.2), squeeze=False,
                             sharey=True)
    for ax, mode in zip(axes[0], modes):
        series = {}
        for server in ("redis", "edgekv", "bare"):
            if not any(r["server"] == server for r in runs):
                continue
            cells = []
            for size, pipe, test in cases:
                values = [r["rps"] for r in runs if (r["fsync"], r["server"], r["value_bytes"],
                                                    r["pipeline"], r["test"]) ==
                          (mode, server, size, pipe, test)]
                cells.append((_median(values), min(values), max(values)) if values else None)
            series["bare Python floor" if server == "bare" else server] = cells
        labels = [f"{t} -P{p} {_size(s)}" for s, p, t in cases]
        _bars(ax, labels, series, ylabel="ops/s (log)")
        ax.set_title(f"fsync {mode} / appendfsync {mode}", fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("redis-benchmark over loopback: median ops/s, bars = min-max over rounds",
                 fontsize=10)
    return _save(fig, out_dir, "server-throughput.png")


def server_latency_cdf(section: dict, out_dir: Path) -> Path | None:
    """Latency CDF of the Python client workload, per fsync mode."""
    runs = [r for r in section.get("runs") or [] if r.get("cdf")]
    if not runs:
        return None
    modes = [m for m in MODES if any(r["fsync"] == m for r in runs)]
    fig, axes = plt.subplots(1, len(modes), figsize=(max(7, 5 * len(modes)), 4.2), squeeze=False,
                             sharey=True)
    styles = {("redis", "redis"): ("redis-server (GET/SET/SCAN)", "-"),
              ("edgekv", "redis"): ("edgekv (GET/SET/SCAN)", "-"),
              ("edgekv", "kv"): ("edgekv (KV.GET/PUT/LIST)", "--")}
    for ax, mode in zip(axes[0], modes):
        for (server, dialect), (label, style) in styles.items():
            mine = [r for r in runs if (r["fsync"], r["server"], r["dialect"]) ==
                    (mode, server, dialect)]
            if not mine:
                continue
            # the median round by ops/s stands for the mode
            mine.sort(key=lambda r: r["ops_per_s"])
            run = mine[len(mine) // 2]
            xs = [p[0] for p in run["cdf"]]
            ys = [p[1] for p in run["cdf"]]
            ax.plot(xs, ys, style, color=COLORS[server], label=label, linewidth=1.5)
        ax.set_xscale("log")
        ax.set_yscale("logit")
        ax.set_yticks([0.5, 0.9, 0.99, 0.999])
        ax.set_yticklabels(["p50", "p90", "p99", "p99.9"])
        ax.set_xlabel("latency per operation, ms (log)")
        ax.set_title(f"fsync {mode}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle("redis-py mixed workload: latency CDF of the median round", fontsize=10)
    return _save(fig, out_dir, "server-latency-cdf.png")


def embedded_ops(section: dict, out_dir: Path) -> Path | None:
    summary = section.get("summary") or {}
    if not summary:
        return None
    metrics = (("put_always", "put, always"), ("put_everysec", "put, everysec"),
               ("get", "get"), ("list_pages", "list 1,000-key page"))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = {}
    for store, s in summary.items():
        series[store] = [(s[m]["median"], s[m]["min"], s[m]["max"]) if m in s else None
                         for m, _ in metrics]
    _bars(ax, [label for _, label in metrics], series, ylabel="operations/s (log)")
    ax.legend(fontsize=8)
    ax.set_title(f"in process, {section.get('keys', 0):,} keys: median ops/s, bars = min-max "
                 f"over rounds", fontsize=10)
    return _save(fig, out_dir, "embedded-ops.png")


def scale(section: dict, out_dir: Path) -> Path | None:
    sizes = section.get("sizes") or []
    if not sizes:
        return None
    ns = [s["keys"] for s in sizes]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ns, [s.get("open_s") for s in sizes], "o-", color=COLORS["edgekv"],
             label="open (full scan)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("keys")
    ax1.set_ylabel("seconds (log)")
    ax1.set_title("open time", fontsize=10)
    ax1.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=8)
    ax2.plot(ns, [s.get("rss_per_key_load") for s in sizes], "o-", label="after N puts")
    ax2.plot(ns, [s.get("rss_per_key_reopen") for s in sizes], "s--", label="after reopen")
    ax2.set_xscale("log")
    ax2.set_xlabel("keys")
    ax2.set_ylabel("RSS bytes per key")
    ax2.set_ylim(bottom=0)
    ax2.set_title("memory per key (20 B keys, 100 B values)", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return _save(fig, out_dir, "scale.png")


def disk_vs_live(result: dict, out_dir: Path) -> Path | None:
    """Segment bytes beside live bytes at each stage of ``compaction_bench.run``."""
    stages = result.get("stages") or []
    if not stages:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [s["stage"] for s in stages]
    xs = range(len(stages))
    ax.bar([x - 0.2 for x in xs], [s["disk_bytes"] / 1e6 for s in stages], 0.4,
           label="segment bytes on disk", color=COLORS["edgekv"])
    ax.bar([x + 0.2 for x in xs], [s["live_bytes"] / 1e6 for s in stages], 0.4,
           label="live record bytes", color="#7f7f7f")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("MB")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"disk vs live bytes, {result.get('keys', 0):,} keys", fontsize=10)
    return _save(fig, out_dir, "scale-disk.png")


def compaction_timeline(section: dict, out_dir: Path) -> Path | None:
    timeline = section.get("timeline") or []
    if not timeline:
        return None
    ts = [float(p[0]) for p in timeline]
    p99 = [float(p[1]) for p in timeline]
    busy = [bool(p[2]) for p in timeline]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(ts, p99, "-", color=COLORS["edgekv"], linewidth=1.2, label="p99 latency")
    # shade the windows in which a compaction ran
    start = None
    for t, b in zip(ts + [None], busy + [False]):
        if b and start is None:
            start = t
        elif not b and start is not None:
            ax.axvspan(start, t if t is not None else ts[-1], color="#ffbf00", alpha=0.3,
                       label="compacting" if not ax.patches else None)
            start = None
    ax.set_xlabel("seconds")
    ax.set_ylabel("p99, ms")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("p99 over time while compaction runs", fontsize=10)
    return _save(fig, out_dir, "compaction-timeline.png")


def crypto(rows: list[dict], out_dir: Path) -> Path | None:
    """Put and get ops/s per workload, plain beside encrypted+compressed."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2))
    series = {}
    for op in ("put", "get"):
        for config in ("plain", "encrypted+compressed"):
            series[f"{op}, {config}"] = [
                (r[f"{op} {config}"],) * 3 if r.get(f"{op} {config}") else None for r in rows]
    _bars(ax, [r["workload"] for r in rows], series, log=False, ylabel="ops per CPU second")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("encryption (AES-256-GCM) and compression (zstd) on vs off, best round",
                 fontsize=10)
    return _save(fig, out_dir, "crypto.png")


def _median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _size(n: int) -> str:
    return f"{n // 1024}KiB" if n >= 1024 and n % 1024 == 0 else f"{n}B"
