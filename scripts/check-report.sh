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
echo "screenshot: $png ($(stat -c %s "$png") bytes)"
