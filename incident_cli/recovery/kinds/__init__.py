"""One module per action kind, each with the same `prepare`/`record` shape (registry.py)."""
