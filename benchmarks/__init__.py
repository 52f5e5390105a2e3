"""Benchmarks of the app through devhost, over HTTP, with an instant scripted model.

`python -m benchmarks --help` lists the sections (latency per backend, throughput against
concurrency, a long thread, restart recovery, SQLite commits and work items per turn) and
their sizes; `--quick` runs all of them small, in about a minute. Results are printed as a
table and as JSON, and the plots are written to docs/. See docs/benchmarks.md.
"""
