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

# Debian packages the tests need. Grows with each stage (python3-aiosmtpd is the
# real SMTP server of the email tests; HAProxy fronts the failover tests;
# Chromium and chromedriver drive the dashboard's browser test). `prometheus`
# brings promtool too; gcc builds the fake libnvidia-ml.so; openssl makes the
# probe tests' certificate.
PACKAGES=(python3 ca-certificates prometheus prometheus-alertmanager postgresql pgbouncer redis-server haproxy gcc libc6-dev openssl python3-aiosmtpd chromium chromium-driver fonts-dejavu-core)

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

# The bundled rules' unit tests, with homeostat's own rule evaluation (the
# same files pass `promtool test rules`; tests/promtool_compat.rs compares).
echo "== bundled rules"
target/debug/homeostat check rules rules/*.rules.yml
target/debug/homeostat test rules rules/*.test.yml

echo "== bundled playbooks"
target/debug/homeostat playbook check playbooks/*.yml

# PromQL conformance on Prometheus 2.42's own test files (../shared/data, or
# $HOMEOSTAT_SHARED_DATA). The README records the passing count; it may only
# go up, so a lower count fails the suite, as does falling under 95%.
PROMQL_MIN_PASSED=445
data="${HOMEOSTAT_SHARED_DATA:-../shared/data}"
if [ -d "$data/promql" ]; then
  echo "== PromQL conformance ($data/promql)"
  out=$(target/debug/homeostat promql-test "$data"/promql/*.test 2>&1) || true
  printf '%s\n' "$out" | grep -v '^ ' | tail -n 40
  last=$(printf '%s\n' "$out" | tail -n 1)
  passed=$(echo "$last" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
  failed=$(echo "$last" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  if [ -z "$passed" ]; then
    echo "promql-test did not print its summary line" >&2
    exit 1
  fi
  if [ "$passed" -lt "$PROMQL_MIN_PASSED" ] || [ $((passed * 100)) -lt $(((passed + failed) * 95)) ]; then
    echo "PromQL conformance fell: $passed passed, $failed failed (need >= $PROMQL_MIN_PASSED and >= 95%)" >&2
    exit 1
  fi
else
  echo "SKIP: PromQL conformance: $data/promql not found (set HOMEOSTAT_SHARED_DATA)"
fi

if [ "${FUZZ_SECONDS:-60}" != "0" ]; then
  echo "== fuzz smoke run (${FUZZ_SECONDS:-60}s)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
