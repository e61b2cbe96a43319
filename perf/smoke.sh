#!/usr/bin/env bash
# Runs every benchmark once (BenchmarkDotNet's Dry job) and the memory-efficiency report, so the benchmarks cannot
# rot. Numbers from this run mean nothing; perf/RESULTS.md says how the real ones are taken.
set -euo pipefail
cd "$(dirname "$0")/.."
project=perf/Zipora.Buffers.Benchmarks
dotnet build "$project" -c Release
dotnet run --project "$project" -c Release --no-build -- --efficiency
dotnet run --project "$project" -c Release --no-build -- --phase-shift
dotnet run --project "$project" -c Release --no-build -- --segmented-memory
dotnet run --project "$project" -c Release --no-build -- --filter '*' --job Dry --artifacts artifacts/benchmarks-smoke
