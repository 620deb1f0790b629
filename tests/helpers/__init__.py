"""Small client helpers shared by test modules (so no test module imports another)."""
