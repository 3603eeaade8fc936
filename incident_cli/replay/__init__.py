"""`incident replay`: a rule file backtested against the alert history Prometheus kept."""
