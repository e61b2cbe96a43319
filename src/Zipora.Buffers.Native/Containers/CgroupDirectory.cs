using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Native;

/// <summary>
/// Where the files of one cgroup controller for this process are: the cgroup v1 hierarchy that mounts the controller
/// where there is one (hybrid hosts), otherwise the cgroup v2 unified hierarchy. Found from <c>/proc/self/cgroup</c>
/// and <c>/proc/self/mountinfo</c>.
/// </summary>
internal sealed class CgroupDirectory
{
    /// <summary>Limits at or above this mean "no limit": v1 writes 2^63 rounded down to a page (9223372036854771712).</summary>
    public const long Unlimited = 1L << 62;

    private CgroupDirectory(string path, string mountPoint, bool isVersion1)
    {
        Path = path;
        MountPoint = mountPoint;
        IsVersion1 = isVersion1;
    }

    /// <summary>The directory of the process's cgroup.</summary>
    public string Path { get; }

    /// <summary>The mount point of its hierarchy: the top directory the process can see.</summary>
    public string MountPoint { get; }

    /// <summary>Whether it is a cgroup v1 hierarchy (else the v2 unified one).</summary>
    public bool IsVersion1 { get; }

    /// <summary>
    /// The process's cgroup for <paramref name="controller"/> as the given <c>cgroup</c> and <c>mountinfo</c> files
    /// describe it, or <see langword="null"/> off Linux or where none is mounted or readable.
    /// </summary>
    public static CgroupDirectory? Find(string controller, string cgroupFile, string mountInfoFile)
    {
        if (!OperatingSystem.IsLinux() || !File.Exists(cgroupFile) || !File.Exists(mountInfoFile))
        {
            return null;
        }

        // Found from the static initializer every pool goes through: a file that exists but cannot be read (denied by
        // a security module, an I/O error) means no cgroup is known, not a pool that cannot be created.
        try
        {
            return FindIn(controller, cgroupFile, mountInfoFile);
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

    /// <summary>The cgroup's directory and each ancestor's up to the mount point: where the limits that apply to it are.</summary>
    public IEnumerable<string> UpToMountPoint()
    {
        for (string? directory = Path; directory is not null && directory.StartsWith(MountPoint, StringComparison.Ordinal); directory = System.IO.Path.GetDirectoryName(directory))
        {
            yield return directory;
        }
    }

    private static CgroupDirectory? FindIn(string controller, string cgroupFile, string mountInfoFile)
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
            else if (Array.IndexOf(parts[1].Split(','), controller) >= 0)
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

            bool isV1 = filesystem[0] == "cgroup" && Array.IndexOf(filesystem[2].Split(','), controller) >= 0;
            bool isV2 = filesystem[0] == "cgroup2";
            string? path = isV1 ? v1Path : isV2 && v1Path is null ? v2Path : null;
            if (path is not null && Under(Unescape(mount[3]), path) is { } relative)
            {
                string mountPoint = Unescape(mount[4]);
                string directory = System.IO.Path.Join(mountPoint, relative);
                if (System.IO.Directory.Exists(directory))
                {
                    return new CgroupDirectory(directory, mountPoint, isV1);
                }
            }
        }

        return null;
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

    /// <summary>Reads a file holding one number, or "max" (no limit); false when absent.</summary>
    public static bool TryReadNumber(string file, out long value)
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
}
