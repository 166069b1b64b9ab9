"""Baselines the benchmarks measure eventlog against, in the same process and run."""
