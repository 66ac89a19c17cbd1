"""Benchmarks: scripts with ``main(argv)`` that write ``benchmarks/results/``."""
