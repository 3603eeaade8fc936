"""Servers and helpers the tests start for real (see each module)."""
