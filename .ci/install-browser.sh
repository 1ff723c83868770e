#!/usr/bin/env bash
# Install what tests/test_viz_browser.py drives: Debian's Chromium and its
# chromedriver (plus a font for legible screenshots). Idempotent and quiet:
# does nothing when both are already there. Selenium comes from pip with the
# `test` extra; nothing here or there downloads a browser of its own.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "install-browser: chromium and chromedriver already installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "install-browser: need root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
echo "install-browser: $(chromium --version 2>/dev/null | head -n 1); $(chromedriver --version | head -n 1)"
