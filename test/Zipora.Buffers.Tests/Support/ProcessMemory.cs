using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>The process's resident memory, from <c>/proc/self/statm</c> and <c>/proc/self/status</c>.</summary>
internal static class ProcessMemory
{
    public static bool CanRead => File.Exists("/proc/self/statm");

    public static long ResidentBytes()
    {
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }

    /// <summary>The <c>VmRSS</c> line of <c>/proc/self/status</c>, in bytes (the kernel reports it in kB).</summary>
    public static long VmRssBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                string kilobytes = line["VmRSS:".Length..].Trim().Split(' ')[0];
                return long.Parse(kilobytes, CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("/proc/self/status has no VmRSS line");
    }
}
