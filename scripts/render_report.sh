#!/usr/bin/env bash
# Renders an nncert report.html in headless Chromium and checks what a reader must see.
#   bash scripts/render_report.sh REPORT_DIR [SCREENSHOT.png]
# Writes a full-page screenshot (default REPORT_DIR/report.png) and checks with --dump-dom that the rendered page
# has the verdict table, at least one SVG chart and the compliance sections. Exits 1 if a check fails, and 0 with a
# loud SKIPPED line if Chromium is not installed (.ci/run installs it).
set -euo pipefail
dir=${1:?usage: render_report.sh REPORT_DIR [SCREENSHOT.png]}
shot=${2:-$dir/report.png}
html=$(cd "$dir" && pwd)/report.html
[ -f "$html" ] || { echo "render_report: $html not found" >&2; exit 1; }
browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [ -z "$browser" ]; then
  echo "SKIPPED: render_report: no Chromium found; the browser check of report.html did not run" >&2
  exit 0
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# No network, no first-run or background services: the report must be self-contained.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$profile")
"$browser" "${flags[@]}" --screenshot="$shot" --window-size=1280,4000 "file://$html" >/dev/null 2>&1
[ -s "$shot" ] || { echo "render_report: no screenshot written to $shot" >&2; exit 1; }
dom=$("$browser" "${flags[@]}" --dump-dom "file://$html" 2>/dev/null)
fail=0
check() {
  if grep -q -- "$1" <<<"$dom"; then echo "ok: $2"; else echo "MISSING: $2" >&2; fail=1; fi
}
check 'id="verdicts"' "verdict table"
check '<svg[^>]*class="chart"' "SVG chart"
check 'class="v-proved"' "a proved verdict cell"
check '5. Interpretation' "interpretation section"
check 'ISO/IEC TR 24028' "TR 24028 dimensions"
check 'Annex IV' "EU AI Act Annex IV items"
[ "$fail" -eq 0 ] || exit 1
echo "render_report: $html rendered by $browser; screenshot $shot"
