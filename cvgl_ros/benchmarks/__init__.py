"""Named benchmarks behind `cvgl bench`: one module per area, each registering with
`@benchmark(name)`. Speed and memory are measured here, never by timed asserts in tests."""
from cvgl_ros.benchmarks.harness import BENCHMARK_MODULES, benchmark, measure, run_benchmarks

__all__ = ["BENCHMARK_MODULES", "benchmark", "measure", "run_benchmarks"]
