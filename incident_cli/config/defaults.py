"""The one place defaults live: every value a key takes when the file does not set it."""

from __future__ import annotations

import ipaddress

DEFAULT_CONFIG_NAME = "incident.yaml"
DEFAULT_DB_NAME = "incident.db"
# The environment variables that say where things are (-c/--config and --db win over them).
CONFIG_VAR = "INCIDENT_CONFIG"
DB_VAR = "INCIDENT_DB"
# The name this host goes by in heartbeats, claims and actions (default: its hostname).
HOSTNAME_VAR = "INCIDENT_HOSTNAME"
HOSTNAME_MAX = 255
# The built-in defaults' source reads this one (BUILTIN_YAML below).
PROMETHEUS_URL_VAR = "PROMETHEUS_URL"
# Human output: the width it folds to off a terminal (cli/context.console), and no colour
# (read by rich).
COLUMNS_VAR = "COLUMNS"
NO_COLOR_VAR = "NO_COLOR"

BUILTIN = "<built-in defaults>"

BUILTIN_YAML = """
sources:
  prometheus: {type: prometheus, url: "${PROMETHEUS_URL:-http://localhost:9090}"}
rules:
  - {name: service-down, match: {alertname: "~(BackendServiceDown|EphemerisServiceDown)"},
     handler: service_down, severity: critical}
  - {name: slo, match: {alertname: "~(ServiceAvailabilityBreach|ErrorRateSLOBreach)"},
     handler: slo_breach}
  - {name: latency, match: {alertname: "~LatencySLOBreach_.*"}, handler: performance_issue}
  - {name: auth-spike, match: {alertname: AuthenticationFailureSpike},
     handler: security_incident, severity: critical}
"""

# sources.<name> and channels.<name>
SOURCE_TIMEOUT = 10.0
MAX_ALERTS = 50000  # per source: a source that reports more is a failed source
CHANNEL_TIMEOUT = 10.0

# incidents:
RESOLVE_AFTER = 300.0
REOPEN_WITHIN = 900.0
FLAPPING_CHANGES = 4
FLAPPING_WINDOW = 3600.0
STORM_MAX_NEW_PER_TICK = 20
AUTO_RESOLVE = True
# incidents.mass_resolve_guard: one poll clearing more than MAX_FRACTION of at least MIN_OPEN
# open incidents has those clears held for HOLD (0: the guard is off).
MASS_RESOLVE_MIN_OPEN = 10
MASS_RESOLVE_MAX_FRACTION = 0.5
MASS_RESOLVE_HOLD = 600.0

# defaults:
SEVERITY = "warning"

# anomaly:
ANOMALY_WINDOW = 12
FAIL_THRESHOLD = 0.10
P95_FACTOR = 1.5
CONSECUTIVE_FAILURES = 3

# recovery: and a rule's recovery:, verify: and diagnostics:
RECOVERY_ENABLED = True
MAX_CONCURRENT = 2
RECOVERY_TIMEOUT = 600.0
MAX_ATTEMPTS = 3
BACKOFF = 30.0
COOLDOWN = 3600.0
VERIFY_WITHIN = 600.0
DIAGNOSTICS_TIMEOUT = 30.0
APPROVAL_REQUIRED = False  # recovery.approval (RECOVERY_APPROVAL) and a rule's recovery.approval
APPROVAL_TIMEOUT = 1800.0
# recovery.breaker: the blast-radius guard above every (rule, target) budget
BREAKER_MAX_ACTIONS = 10
BREAKER_WITHIN = 900.0
BREAKER_MAX_INCIDENTS = 25
BREAKER_AUTO_RESET = False

# security:
AUTO_BLOCK = False
AUTO_ESCALATE = True
MAX_BLOCKS_PER_TICK = 5
NEVER_BLOCK_TEXT = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128")
NEVER_BLOCK: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(text) for text in NEVER_BLOCK_TEXT
)
