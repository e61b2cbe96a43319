using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>The process's resident memory, from <c>/proc/self/statm</c> (the same count as <c>VmRSS</c> in <c>/proc/self/status</c>).</summary>
internal static class ProcessMemory
{
    public static bool CanRead => File.Exists("/proc/self/statm");

    public static long ResidentBytes()
    {
        string[] fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }
}
