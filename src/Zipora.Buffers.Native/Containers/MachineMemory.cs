using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Native;

/// <summary>The machine's physical memory, from <c>/proc/meminfo</c>.</summary>
internal static class MachineMemory
{
    /// <summary>Bytes of physical memory (<c>MemTotal</c>), or 0 where <c>/proc/meminfo</c> cannot be read.</summary>
    public static long TotalBytes()
    {
        const string ProcMeminfo = "/proc/meminfo";
        if (!OperatingSystem.IsLinux() || !File.Exists(ProcMeminfo))
        {
            return 0;
        }

        foreach (string line in File.ReadLines(ProcMeminfo))
        {
            // "MemTotal:       24684084 kB"
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
            {
                string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return fields.Length >= 2 && long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kilobytes)
                    ? kilobytes * 1024
                    : 0;
            }
        }

        return 0;
    }
}
