using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;

namespace Zipora.Buffers.Tests;

/// <summary>The container probe the container tests run in a memory cgroup, and what it prints.</summary>
internal static class ContainerProbeOutput
{
    /// <summary>The probe's assembly, built beside the tests.</summary>
    public static string Probe => Path.Join(AppContext.BaseDirectory, "Zipora.Buffers.ContainerProbe.dll");

    /// <summary>The key=value pairs of the probe's RESULT line.</summary>
    public static Dictionary<string, long> Result(string output)
    {
        string line = output.Split('\n').Single(line => line.StartsWith("RESULT ", StringComparison.Ordinal));
        return line["RESULT ".Length..].Trim().Split(' ')
            .Select(pair => pair.Split('='))
            .ToDictionary(pair => pair[0], pair => long.Parse(pair[1], CultureInfo.InvariantCulture), StringComparer.Ordinal);
    }
}
