"""Benchmarks against baselines and peers (aria2c); not timed tests. See bench/README.md."""
