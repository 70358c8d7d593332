"""leadwatch benchmarks: `make bench` (see README, Performance)."""
