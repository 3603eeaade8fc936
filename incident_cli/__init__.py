"""incident: turn firing Prometheus/Alertmanager alerts into tracked incidents, from cron."""

__version__ = "0.1.0"
