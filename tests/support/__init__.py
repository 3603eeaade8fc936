"""Shared test helpers: the real binaries and CLI runs (binaries), setups for recovery, notify
and report tests (recover, notify, history), and servers the tests start (postgres, slow_peer,
toy_service)."""
