"""Benchmark registry and runner.

A benchmark is a function registered with `@benchmark("name")` in one of the modules named
in BENCHMARK_MODULES. It returns a dict of cases, each case a dict of numbers, usually from
`measure()` (median and p95 time, throughput) plus anything specific (sizes, counts).
The runner executes every benchmark in its own fresh process so that the reported peak
RSS belongs to that benchmark alone, and writes one JSON with machine information.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from cvgl_ros.errors import InputError

# Modules holding benchmarks, one per area; a module absent from this checkout is skipped.
BENCHMARK_MODULES = ["geo", "tiles", "sim", "model", "filter", "pipeline", "accuracy", "retrieval"]


@dataclass
class Benchmark:
    name: str
    description: str
    func: Callable[[], dict]
    by_default: bool = True  # False: run only when named (`--only NAME`), e.g. the 25-min fleet


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, description: str = "", by_default: bool = True):
    """Register `func() -> {case: {metric: number}}` under `name` (`by_default=False`: only
    when asked for by name)."""

    def decorate(func):
        _REGISTRY[name] = Benchmark(name, description or (func.__doc__ or "").strip(), func, by_default)
        return func

    return decorate


def registry() -> dict[str, Benchmark]:
    for module in BENCHMARK_MODULES:
        try:
            importlib.import_module(f"cvgl_ros.benchmarks.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cvgl_ros.benchmarks.{module}":
                raise
    return dict(_REGISTRY)


def measure(func: Callable[[], object], repeats: int = 20, warmup: int = 1, items: int = 1) -> dict:
    """Time `func` `repeats` times after `warmup` calls; `items` is work per call."""
    for _ in range(warmup):
        func()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        func()
        times[i] = time.perf_counter() - t0
    median = float(np.median(times))
    return {
        "median_ms": median * 1e3,
        "p95_ms": float(np.percentile(times, 95)) * 1e3,
        "mean_ms": float(times.mean()) * 1e3,
        "min_ms": float(times.min()) * 1e3,
        "repeats": repeats,
        "items_per_call": items,
        "throughput_per_s": items / median if median > 0 else None,
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(name: str, queue) -> None:
    try:
        bench = registry()[name]
        t0 = time.perf_counter()
        cases = bench.func()
        queue.put({"ok": True, "cases": cases, "wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()})
    except BaseException as exc:  # noqa: BLE001 - reported in the JSON
        queue.put({"ok": False, "error": f"{exc.__class__.__name__}: {exc}"})


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict:
    from cvgl_ros.cli.doctor import collect

    versions = collect()
    keep = ("python", "numpy", "onnxruntime", "onnxruntime_providers", "torch", "rmw_implementation",
            "opencv", "rosbags")
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": {k: versions.get(k) for k in keep},
        "git_commit": _git_commit(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_benchmarks(only: list[str] | None = None, progress=print) -> dict:
    """Run the named benchmarks (when `only` is empty: all but those registered with
    by_default=False), each in a fresh process."""
    available = registry()
    names = [n for n, b in available.items() if b.by_default] if not only else only
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"unknown benchmark {', '.join(unknown)}; available: {', '.join(sorted(available))}")
    ctx = mp.get_context("spawn")
    results = {}
    for name in names:
        progress(f"bench {name} ...")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, queue))
        proc.start()
        result = queue.get()
        proc.join()
        result["description"] = available[name].description
        results[name] = result
        if not result["ok"]:
            progress(f"bench {name} FAILED: {result['error']}")
    return {"machine": machine_info(), "benchmarks": results}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `cvgl bench`")
