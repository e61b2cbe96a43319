#!/usr/bin/env bash
# Kestrel end to end: the Kestrel sample under wrk on loopback, Kestrel's default pool against AddTieredMemoryPool()
# (whose views hand Kestrel an owner per rent in every mode, so ReuseOwners does not change what is measured here).
# For each pool and endpoint: requests/s and p99 latency (wrk --latency), peak RSS while loaded (VmHWM), and RSS
# 30 s after the load stops (VmRSS). Usage: perf/kestrel-wrk.sh [seconds per run, default 20] [connections, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
dotnet build samples/Zipora.Buffers.KestrelSample -c Release >/dev/null
app=samples/Zipora.Buffers.KestrelSample/bin/Release/net10.0/Zipora.Buffers.KestrelSample.dll

run() {
  local pool=$1 path=$2
  DOTNET_gcServer=0 Logging__LogLevel__Default=Warning dotnet "$app" --pool="$pool" --http1-port=5380 --http2-port=5381 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:5380/hello && break; sleep 0.2; done
  wrk -t2 -c8 -d3s "http://127.0.0.1:5380$path" >/dev/null   # warm-up
  local out; out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:5380$path")
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  local p99; p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  local peak; peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  sleep 30
  local idle; idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '| %s | %s | %s | %s | %s MB | %s MB |\n' "$pool" "$path" "$rps" "$p99" "$((peak / 1024))" "$((idle / 1024))"
}

echo "| pool | endpoint | requests/s | p99 latency | peak RSS | RSS 30 s after |"
echo "|---|---|---|---|---|---|"
for path in /hello /bytes/262144; do
  run default "$path"
  run tiered "$path"
done
