"""Benchmarks: each prints figures measured side by side with this machine's own ceilings."""
