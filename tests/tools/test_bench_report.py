"""bench/report.py end to end: a ``--quick`` run writes the page, its figures and the raw JSON.

The run is real (real servers on loopback, real stores on disk) but small; the checks are that
every section either produced plausible numbers or says why it did not run, and that every
figure the page links to exists as a PNG.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report's figures need the bench extra")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    env = {**os.environ, "BENCH_TMP": str(out)}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "report.py"), "--quick",
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"out": out, "stderr": proc.stderr,
            "markdown": (out / "benchmarks.md").read_text(),
            "doc": json.loads((out / "report.json").read_text())}


def section(report, name):
    return report["doc"]["sections"][name]


def test_page_records_the_machine_and_every_section(quick_report):
    md = quick_report["markdown"]
    assert md.startswith("# Benchmarks\n")
    assert f"| cores | {os.cpu_count()} |" in md
    assert re.search(r"\| Python \| 3\.\d+\.\d+ \|", md)
    assert re.search(r"\| edgekv \| \d+\.\d+", md)
    for title in ("## Headline", "## Where edgekv is behind", "### The hot path",
                  "## Server, over loopback", "## Embedded, in process", "## Scale",
                  "## Latency while compaction runs", "## Encryption and compression"):
        assert title in md, title
    # a section that could not run says so and why, rather than vanishing
    for name in ("server", "embedded", "scale", "compaction", "crypto"):
        sec = section(quick_report, name)
        assert sec["status"] in ("ok", "not run")
        if sec["status"] != "ok":
            assert sec["reason"] and f"Not run: {sec['reason'][:40]}" in md


def test_embedded_numbers_are_plausible(quick_report):
    sec = section(quick_report, "embedded")
    assert sec["status"] == "ok", sec.get("reason")
    summary = sec["result"]["summary"]
    assert {"edgekv", "sqlite"} <= set(summary)
    edge = summary["edgekv"]
    assert 1_000 < edge["get"]["median"] < 50_000_000
    assert edge["list_pages"]["median"] > 1
    # an fsync per put is far slower than none, for every store that ran
    for store in summary.values():
        assert store["put_always"]["median"] < store["put_everysec"]["median"]
        assert store["get"]["min"] <= store["get"]["median"] <= store["get"]["max"]
    assert "| edgekv / sqlite |" in quick_report["markdown"]


def test_scale_numbers_are_plausible(quick_report):
    sec = section(quick_report, "scale")
    assert sec["status"] == "ok", sec.get("reason")
    sizes = sec["result"]["sizes"]
    assert [s["keys"] for s in sizes] == [5_000, 20_000]
    for s in sizes:
        assert 0 < s["open_s"] < 60
        assert 20 < s["rss_per_key_reopen"] < 2_000
    comp = sec["result"]["compaction"]
    assert comp["status"] == "ok", comp.get("reason")
    stages = {st["stage"]: st for st in comp["result"]["stages"]}
    before, after = stages["written, overwritten twice"], stages["compacted"]
    assert before["disk_bytes"] > 2 * before["live_bytes"]  # three records per live key
    assert after["disk_bytes"] < 1.3 * after["live_bytes"]


def test_server_section_compares_with_real_redis(quick_report):
    sec = section(quick_report, "server")
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        assert sec["status"] == "not run" and "redis" in sec["reason"]
        return
    assert sec["status"] == "ok", sec.get("reason")
    bench = sec["result"]["benchmark"]
    assert bench["status"] == "ok", bench.get("reason")
    for row in bench["result"]["summary"]:
        assert row["edgekv_rps"] > 100 and row["redis_rps"] > 100
        assert 0.01 < row["ratio"] < 100
        assert row["bare_rps"] > 100  # the bare Python floor ran in the same rounds
    assert "| edgekv / bare |" in quick_report["markdown"]
    client = sec["result"]["client"]
    assert client["status"] == "ok", client.get("reason")
    runs = client["result"]["runs"]
    assert {(r["server"], r["dialect"]) for r in runs} == {
        ("redis", "redis"), ("edgekv", "redis"), ("edgekv", "kv")}
    for r in runs:
        assert r["errors"] == 0 and r["ops"] > 50
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"]
    profile = sec["result"]["profile"]
    assert profile["status"] == "ok", profile.get("reason")
    top = profile["result"]["profiles"][0]["self"]
    assert top and all(0 < share <= 1 for _name, share in top)
    # the "behind" verdict is computed over the comparisons, whichever way it falls
    assert re.search(r"\*\*\d+ of \d+\*\* comparisons|In none of the \d+ comparisons",
                     quick_report["markdown"])


def test_every_linked_figure_is_a_png(quick_report):
    md, out = quick_report["markdown"], quick_report["out"]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    expected = {"benchmarks/embedded-ops.png", "benchmarks/scale.png",
                "benchmarks/scale-disk.png"}
    if section(quick_report, "server")["status"] == "ok":
        expected |= {"benchmarks/server-throughput.png", "benchmarks/server-latency-cdf.png"}
    if section(quick_report, "compaction")["status"] == "ok":
        expected.add("benchmarks/compaction-timeline.png")
    assert expected <= set(links)
    for link in links:
        data = (out / link).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, link
