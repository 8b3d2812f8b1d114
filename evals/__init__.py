"""Benchmarks and their official protocols (LongBench v2, BABILong) and the offline demo set.

Imports neither torch nor ``laserkv``; the engine imports nothing from here.
"""
