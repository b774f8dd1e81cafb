"""semtune's benchmarks: `python -m bench` runs the CPU set (see bench/README.md)."""
