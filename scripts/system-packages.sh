#!/usr/bin/env bash
# The Debian packages the tests need beyond Python: Chromium for the web app's browser
# tests (Testing/test_app_browser.py); EGL/Mesa for VTK's offscreen slice views and the
# libraries of the Slicer panel's offscreen Qt widget tests. Installed when missing and
# this runs as root (CI, containers); otherwise it prints the one command to run.
set -euo pipefail
packages=(chromium libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libxkbcommon0 libfontconfig1
          libdbus-1-3)
if ! command -v dpkg >/dev/null || dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system packages missing; install them with: sudo apt-get install ${packages[*]}" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${packages[@]}" >/dev/null
