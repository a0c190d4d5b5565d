#!/usr/bin/env bash
# Makes sure a headless browser for the sandbox's browser test is installed: Debian's
# `chromium` and `chromium-driver` (chromedriver), and a colour emoji font so the bot's cards
# render as in Slack, installed with apt-get when missing.
# Prints the chromedriver path. scripts/test.sh runs it; tests/sandbox_browser.rs needs it.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 ||
  ! [ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  echo "browser.sh: installing chromium and chromium-driver with apt-get..." >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-noto-color-emoji >&2
fi
command -v chromedriver
