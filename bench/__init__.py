"""Benchmarks (never timed tests). Each module regenerates its report: see bench/REPORT.md."""
