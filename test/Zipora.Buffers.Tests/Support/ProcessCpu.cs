using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>CPU time the process has used (user plus system), from <c>/proc/self/stat</c>.</summary>
internal static class ProcessCpu
{
    // The kernel reports utime and stime in clock ticks of USER_HZ, which is 100 on every Linux ABI .NET runs on.
    private const double TicksPerSecond = 100;

    public static bool CanRead => File.Exists("/proc/self/stat");

    public static TimeSpan UsedSoFar()
    {
        string stat = File.ReadAllText("/proc/self/stat");

        // The command name (field 2) is in parentheses and may hold spaces: count the fields after its closing one.
        // utime and stime are fields 14 and 15, so the 12th and 13th after the state (field 3).
        string[] afterName = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long ticks = long.Parse(afterName[11], CultureInfo.InvariantCulture) + long.Parse(afterName[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / TicksPerSecond);
    }
}
