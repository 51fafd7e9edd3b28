"""Sweeps, the study protocol with its tables and figures, and benchmarks."""
