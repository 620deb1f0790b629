"""Sandbox admin: creates, seeds and resets sandboxes, and keeps each sandbox's clock."""
