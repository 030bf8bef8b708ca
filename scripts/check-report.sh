#!/usr/bin/env bash
# Renders a study's report.html in headless Chromium and saves a PNG screenshot, to check that the page renders
# offline and its plots are visible (not part of the test suite: it needs a browser).
#   scripts/check-report.sh OUT/report.html [screenshot.png] [width,height]
# Installs Debian's chromium package when no chromium is on PATH (needs root: apt-get).
set -euo pipefail
report="${1:?usage: check-report.sh REPORT.html [OUT.png] [WIDTH,HEIGHT]}"
png="${2:-${report%.html}.png}"
size="${3:-1400,2400}"
[ -f "$report" ] || { echo "check-report: $report not found" >&2; exit 1; }
# Before the browser: the page must be offline-safe and its plots must carry text labels (an SVG without <text>
# means ScottPlot had no font to lay them out with).
plots="$( { grep -o '<svg ' "$report" || true; } | wc -l)"
labels="$( { grep -o '<text ' "$report" || true; } | wc -l)"
[ "$plots" -gt 0 ] || { echo "check-report: $report has no plots" >&2; exit 1; }
[ "$labels" -ge "$plots" ] || { echo "check-report: $report: $plots plots but only $labels text labels" >&2; exit 1; }
if grep -qi '<script' "$report"; then echo "check-report: $report contains a <script>" >&2; exit 1; fi
if grep -oE '(src|href)="https?://' "$report" | grep -q .; then echo "check-report: $report references a remote resource" >&2; exit 1; fi
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  echo "check-report: installing chromium (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  browser="$(command -v chromium)"
fi
# --no-sandbox: running as root in a container; the file is opened offline (file://), nothing is fetched.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$size" \
  --screenshot="$(realpath -m "$png")" "file://$(realpath "$report")" 2>/dev/null
[ -s "$png" ] || { echo "check-report: no screenshot written" >&2; exit 1; }
echo "screenshot: $png ($(stat -c %s "$png") bytes; $plots plots, $labels text labels)"
