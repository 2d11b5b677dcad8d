#!/usr/bin/env bash
# The report test renders report.html in a headless browser. Debian's chromium is installed
# here when none is found and this runs as root with apt-get; otherwise one line says what to do.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
  exit 0
fi
echo "the report test needs a headless browser: install Debian's chromium (apt-get install chromium)" >&2
exit 1
