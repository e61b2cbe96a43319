#!/usr/bin/env bash
# The full benchmark run behind perf/RESULTS.md: every class, every peer, one process at a time, then Kestrel under
# wrk. Takes about 50 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
project=perf/Zipora.Buffers.Benchmarks
dotnet build "$project" -c Release
dotnet run --project "$project" -c Release --no-build -- --efficiency
dotnet run --project "$project" -c Release --no-build -- --phase-shift
dotnet run --project "$project" -c Release --no-build -- --segmented-memory
dotnet run --project "$project" -c Release --no-build -- --many-pipes
dotnet run --project "$project" -c Release --no-build -- --jemalloc --artifacts artifacts/benchmarks-jemalloc --exporters github
dotnet run --project "$project" -c Release --no-build -- --filter '*' --iterationCount 10 --warmupCount 3 --launchCount 1 \
  --artifacts artifacts/benchmarks --exporters github
bash perf/kestrel-wrk.sh 20 64
