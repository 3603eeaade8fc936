#!/usr/bin/env bash
# Render `incident report --format html` for a generated history and screenshot it with headless
# Chromium (Debian: apt-get install chromium), so a person can look at the charts.
# Usage: bench/screenshot_report.sh [OUTDIR]   (default /tmp/incident-report-shots)
# Not part of the test suite: CI has no browser. The page must render with the network off,
# which --disable-background-networking and the page's own Content-Security-Policy ensure.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/incident-report-shots}"
mkdir -p "$out"
python="${PYTHON:-.venv/bin/python}"
db="$out/screenshot.db"
rm -f "$db" "$db-wal" "$db-shm"
"$python" - "$db" <<'EOF'
import sys, time
from pathlib import Path
sys.path.insert(0, "bench")
from bench_report import generate
generate(Path(sys.argv[1]), 3000, time.time())
EOF
chromium_bin="$(command -v chromium || command -v chromium-browser || true)"
for hours in 24 720; do
    page="$out/report-${hours}h.html"
    "$python" -m incident_cli --db "$db" report "$hours" --format html --output "$page"
    if [ -z "$chromium_bin" ]; then
        echo "chromium not installed: wrote $page only" >&2
        continue
    fi
    profile="$(mktemp -d)"
    "$chromium_bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size=1200,2200 \
        --screenshot="$out/report-${hours}h.png" "file://$page" 2>/dev/null
    rm -rf "$profile"
    echo "$out/report-${hours}h.png"
done
