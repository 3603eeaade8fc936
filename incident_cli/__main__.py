"""Allows `python -m incident_cli`."""

from incident_cli.cli.entry import main

main()
