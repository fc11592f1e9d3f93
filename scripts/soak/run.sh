#!/usr/bin/env bash
# A bounded soak: a minute (SOAK_SECS) of mixed createTasks, list, stats and stopTasks
# traffic from wrk while the dialer calls (sim carrier, short calls), on a fresh SQLite
# database. Passes when no answer was wrong and memory stayed flat (the last RSS sample
# within 25% of the one after warm-up). Loopback only; it stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${SOAK_SECS:-60}"
port="${SOAK_PORT:-18990}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

CALLCENTER__SERVER__BIND="127.0.0.1:$port" \
CALLCENTER__DATABASE__URL="sqlite://$dir/soak.db" \
CALLCENTER__RECORDINGS__DIR="$dir/recordings" \
CALLCENTER__SIM__TIME_SCALE=0.02 \
CALLCENTER__DIALER__CALLS_PER_SECOND=200 \
CALLCENTER__DIALER__MAX_CONCURRENT_CALLS=200 \
CALLCENTER__DIALER__RETRY_DELAY_SECS=5 \
RUST_LOG=warn \
  target/release/callcenter serve >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
samples="$dir/rss"
( sleep 15; while kill -0 "$pid" 2>/dev/null; do rss >>"$samples"; sleep 5; done ) &
sampler=$!
wrk -t2 -c16 -d"${secs}s" -s scripts/soak/mixed.lua "http://127.0.0.1:$port" | tee "$dir/wrk.txt"
kill "$sampler" 2>/dev/null || true

wrong=$(awk '/answers,/ {print $4}' "$dir/wrk.txt")
first=$(head -n1 "$samples"); last=$(tail -n1 "$samples"); peak=$(sort -n "$samples" | tail -n1)
stats=$(curl -fs -X POST "http://127.0.0.1:$port/api/aicall/stats" -d '{}')
echo "RSS after warm-up ${first} kB, at the end ${last} kB, peak ${peak} kB (samples every 5 s: $(tr '\n' ' ' <"$samples"))"
echo "dialer today: $stats"
echo "error lines in the server log: $(grep -c ' ERROR ' "$dir/server.log" || true)"
if [ "$wrong" != "0" ]; then echo "FAIL: $wrong wrong answers"; exit 1; fi
if [ "$last" -gt $((first * 125 / 100)) ]; then echo "FAIL: memory grew from $first kB to $last kB"; exit 1; fi
echo "PASS"
