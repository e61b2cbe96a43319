using System;
using System.Linq;
using BenchmarkDotNet.Running;
using Zipora.Buffers.Benchmarks;

// `--efficiency` prints the memory-efficiency table; everything else goes to BenchmarkDotNet's switcher
// (e.g. --filter '*Steady*', --job Dry for the smoke run).
if (args.Contains("--efficiency"))
{
    MemoryEfficiencyReport.Run();
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Peers).Assembly).Run(args);
