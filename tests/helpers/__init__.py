"""Helpers shared by test modules: small clients and fakes, never tests themselves."""
