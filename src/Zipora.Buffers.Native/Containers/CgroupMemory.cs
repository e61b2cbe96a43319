using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Native;

/// <summary>
/// The memory limit and usage of the Linux control group the process runs in: the cgroup v1 memory controller where
/// it is mounted (hybrid hosts), otherwise the cgroup v2 unified hierarchy. Found once from <c>/proc/self/cgroup</c>
/// and <c>/proc/self/mountinfo</c>; the figures are read afresh on every <see cref="TryRead"/>, as a container's
/// limit can be changed while it runs.
/// </summary>
internal sealed class CgroupMemory
{
    // Limits at or above this mean "no limit": v1 writes 2^63 rounded down to a page (9223372036854771712).
    private const long Unlimited = 1L << 62;

    private readonly string _directory;
    private readonly string _mountPoint;
    private readonly bool _isVersion1;

    private CgroupMemory(string directory, string mountPoint, bool isVersion1)
    {
        _directory = directory;
        _mountPoint = mountPoint;
        _isVersion1 = isVersion1;
    }

    /// <summary>Whether the limits come from the cgroup v1 memory controller (else the v2 unified hierarchy).</summary>
    public bool IsVersion1 => _isVersion1;

    /// <summary>The directory of the process's memory cgroup.</summary>
    public string Directory => _directory;

    /// <summary>The process's memory cgroup, or <see langword="null"/> off Linux or where none is mounted or readable.</summary>
    public static CgroupMemory? Find() => Find("/proc/self/cgroup", "/proc/self/mountinfo");

    /// <summary>The memory cgroup described by the given <c>cgroup</c> and <c>mountinfo</c> files (tests point them elsewhere).</summary>
    internal static CgroupMemory? Find(string cgroupFile, string mountInfoFile)
    {
        if (!OperatingSystem.IsLinux() || !File.Exists(cgroupFile) || !File.Exists(mountInfoFile))
        {
            return null;
        }

        // Found from the static initializer every pool goes through: a file that exists but cannot be read (denied by
        // a security module, an I/O error) means no cgroup is known, not a pool that cannot be created.
        try
        {
            return FindIn(cgroupFile, mountInfoFile);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static CgroupMemory? FindIn(string cgroupFile, string mountInfoFile)
    {
        string? v1Path = null, v2Path = null;
        foreach (string line in File.ReadLines(cgroupFile))
        {
            // hierarchy-id:controllers:path; the v2 line is "0::path".
            string[] parts = line.Split(':', 3);
            if (parts.Length != 3)
            {
                continue;
            }

            if (parts[0] == "0" && parts[1].Length == 0)
            {
                v2Path = parts[2];
            }
            else if (Array.IndexOf(parts[1].Split(','), "memory") >= 0)
            {
                v1Path = parts[2];
            }
        }

        foreach (string line in File.ReadLines(mountInfoFile))
        {
            // id parent major:minor root mount-point options [optional...] - fstype source super-options
            string[] halves = line.Split(" - ", 2);
            if (halves.Length != 2)
            {
                continue;
            }

            string[] mount = halves[0].Split(' ');
            string[] filesystem = halves[1].Split(' ');
            if (mount.Length < 5 || filesystem.Length < 3)
            {
                continue;
            }

            bool isV1Memory = filesystem[0] == "cgroup" && Array.IndexOf(filesystem[2].Split(','), "memory") >= 0;
            bool isV2 = filesystem[0] == "cgroup2";
            string? path = isV1Memory ? v1Path : isV2 && v1Path is null ? v2Path : null;
            if (path is not null && Under(Unescape(mount[3]), path) is { } relative)
            {
                string mountPoint = Unescape(mount[4]);
                string directory = Path.Join(mountPoint, relative);
                if (System.IO.Directory.Exists(directory))
                {
                    return new CgroupMemory(directory, mountPoint, isV1Memory);
                }
            }
        }

        return null;
    }

    /// <summary>
    /// Reads the limit that applies to the process (the tightest of its cgroup and every ancestor) and the memory the
    /// cgroup is charged for, less the file cache the kernel can drop without harm (inactive file pages), as the GC
    /// counts it. <paramref name="limit"/> is 0 when no limit is set.
    /// </summary>
    /// <returns>Whether the figures could be read.</returns>
    public bool TryRead(out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        try
        {
            return _isVersion1 ? TryReadVersion1(out limit, out usage) : TryReadVersion2(out limit, out usage);
        }
        catch (IOException)
        {
            // The cgroup went away (the container is being torn down) or a file vanished between two reads.
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private bool TryReadVersion1(out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        if (!TryReadNumber(Path.Join(_directory, "memory.limit_in_bytes"), out long own)
            || !TryReadNumber(Path.Join(_directory, "memory.usage_in_bytes"), out long charged))
        {
            return false;
        }

        // With hierarchy accounting the kernel already folds the ancestors' limits into one figure.
        string stat = File.ReadAllText(Path.Join(_directory, "memory.stat"));
        long hierarchical = StatValue(stat, "hierarchical_memory_limit");
        limit = Limit(Math.Min(own, hierarchical > 0 ? hierarchical : long.MaxValue));
        usage = Math.Max(0, charged - StatValue(stat, "total_inactive_file"));
        return true;
    }

    private bool TryReadVersion2(out long limit, out long usage)
    {
        limit = 0;
        usage = 0;
        if (!TryReadNumber(Path.Join(_directory, "memory.current"), out long charged))
        {
            return false;
        }

        // v2 has no folded figure: walk up to the mount point, taking the tightest memory.max on the way.
        long tightest = long.MaxValue;
        for (string? directory = _directory; directory is not null && directory.StartsWith(_mountPoint, StringComparison.Ordinal); directory = Path.GetDirectoryName(directory))
        {
            if (TryReadNumber(Path.Join(directory, "memory.max"), out long max))
            {
                tightest = Math.Min(tightest, max);
            }
        }

        limit = Limit(tightest);
        string stat = File.ReadAllText(Path.Join(_directory, "memory.stat"));
        usage = Math.Max(0, charged - StatValue(stat, "inactive_file"));
        return true;
    }

    /// <summary>The relative path of <paramref name="path"/> under a mount's root, or null when it lies outside.</summary>
    /// <remarks>
    /// A process whose cgroup lies outside its cgroup namespace's root sees a path climbing out of it ("/../other"):
    /// that cgroup is not under any mount it can see, and joined to a mount point the path would leave the cgroup file
    /// system, so it lies outside every root.
    /// </remarks>
    private static string? Under(string root, string path)
    {
        if (Array.IndexOf(path.Split('/'), "..") >= 0)
        {
            return null;
        }

        if (root == "/")
        {
            return path.TrimStart('/');
        }

        return path.StartsWith(root, StringComparison.Ordinal) && (path.Length == root.Length || path[root.Length] == '/')
            ? path[root.Length..].TrimStart('/')
            : null;
    }

    /// <summary>A path field of mountinfo as it is: the kernel writes a space, tab, newline and backslash as <c>\ooo</c> (octal).</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var text = new System.Text.StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                text.Append((char)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                text.Append(field[i]);
            }
        }

        return text.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';

    private static long Limit(long value) => value >= Unlimited ? 0 : value;

    /// <summary>Reads a file holding one number, or "max" (no limit); false when absent.</summary>
    private static bool TryReadNumber(string file, out long value)
    {
        value = 0;
        if (!File.Exists(file))
        {
            return false;
        }

        string text = File.ReadAllText(file).Trim();
        if (text == "max")
        {
            value = long.MaxValue;
            return true;
        }

        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>The value of one "key value" line of a memory.stat file; 0 when absent.</summary>
    private static long StatValue(string stat, string key)
    {
        foreach (string line in stat.Split('\n'))
        {
            if (line.StartsWith(key, StringComparison.Ordinal) && line.Length > key.Length && line[key.Length] == ' '
                && long.TryParse(line.AsSpan(key.Length + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                return value;
            }
        }

        return 0;
    }
}
