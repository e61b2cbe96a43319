using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// What the reports that measure resident memory share: each case runs in a process of its own (so the memory is
/// that case's alone), started from this assembly, and reads its own /proc/self/status.
/// </summary>
public static class ReportProcess
{
    /// <summary>Runs this assembly with <paramref name="arguments"/> and returns the last line it printed (a row's cells).</summary>
    /// <param name="cells">How many cells a row has, to fill a failed row's.</param>
    /// <param name="arguments">What the child is to measure: its switch and that switch's arguments.</param>
    public static string RunSelf(int cells, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(typeof(ReportProcess).Assembly.Location);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process child = Process.Start(start) ?? throw new InvalidOperationException("dotnet could not be started");
        string output = child.StandardOutput.ReadToEnd().Trim();
        child.WaitForExit();
        return child.ExitCode == 0
            ? output.Split('\n')[^1]
            : $"failed (exit {child.ExitCode})" + string.Concat(Enumerable.Repeat(" | ", cells - 1));
    }

    /// <summary>Resident memory now (VmRSS), in bytes; 0 where there is no /proc.</summary>
    public static long ResidentBytes() => StatusField("VmRSS:");

    /// <summary>The most resident memory so far (VmHWM), in bytes; 0 where there is no /proc.</summary>
    public static long PeakResidentBytes() => StatusField("VmHWM:");

    /// <summary>A field of /proc/self/status, in bytes (the kernel writes kB).</summary>
    private static long StatusField(string name)
    {
        if (!File.Exists("/proc/self/status"))
        {
            return 0;
        }

        string line = File.ReadLines("/proc/self/status").First(line => line.StartsWith(name, StringComparison.Ordinal));
        return long.Parse(line[name.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }
}
