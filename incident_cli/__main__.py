"""Allows `python -m incident_cli`."""

from incident_cli.cli.main import main

main()
