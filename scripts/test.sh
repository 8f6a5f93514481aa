#!/usr/bin/env bash
# The whole test suite: the command the README gives and .ci/run calls.
#
# 1. Installs the Debian packages the tests use when they are missing (needs
#    root; CI runs as root).
# 2. Builds the binaries (end-to-end tests run the real `homeostat` binary).
# 3. Runs every unit and end-to-end test; end-to-end tests start their own
#    servers on 127.0.0.1 with free ports and temp dirs.
# 4. A short fuzz smoke run of the exposition parser (FUZZ_SECONDS, default 60;
#    0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need. Grows with each stage (PostgreSQL, Redis,
# Alertmanager, SMTP, HAProxy, Chromium arrive with their issues).
PACKAGES=(python3 ca-certificates prometheus)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== build"
cargo build --workspace --bins --locked

echo "== tests"
cargo test --workspace --locked

if [ "${FUZZ_SECONDS:-60}" != "0" ]; then
  echo "== fuzz smoke run (${FUZZ_SECONDS:-60}s)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
