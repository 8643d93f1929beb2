"""Benchmark suite for ``poet`` (issue 5): ``python -m benchmarks.run`` (``make bench``) writes RESULTS.md."""
