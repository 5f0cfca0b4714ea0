"""Benchmarks (`make bench`): serving paths side by side and the operator at scale."""
