"""Allows `python -m incident_cli`."""

from incident_cli.cli import main

main()
