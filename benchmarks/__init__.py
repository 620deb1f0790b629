"""Benchmarks that print figures (`make bench`); speed goals live here, never in timed tests."""
