"""Benchmarks: `make bench`. Each row is measured beside its baseline in the same run."""
