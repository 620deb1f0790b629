"""Helpers shared by test modules (client shortcuts, concurrency), so no test module imports another."""
