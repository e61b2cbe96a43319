using System;
using System.Diagnostics;
using System.IO;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A memory cgroup made for one test: created under the cgroup v1 memory controller where the host mounts one, else
/// under the v2 unified hierarchy; runs a child process inside it; removed again. Needs root on Linux.
/// </summary>
internal sealed class MemoryCgroup : IDisposable
{
    private const string Version1Root = "/sys/fs/cgroup/memory";
    private const string Version2Root = "/sys/fs/cgroup";

    private readonly string _directory;
    private readonly bool _isVersion1;

    private MemoryCgroup(string directory, bool isVersion1)
    {
        _directory = directory;
        _isVersion1 = isVersion1;
    }

    /// <summary>Creates a cgroup limited to <paramref name="limitBytes"/>; null with <paramref name="reason"/> where that cannot be done.</summary>
    public static MemoryCgroup? TryCreate(long limitBytes, out string reason)
    {
        reason = string.Empty;
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            reason = "creating a memory cgroup needs root on Linux";
            return null;
        }

        bool isVersion1 = File.Exists(Path.Join(Version1Root, "memory.limit_in_bytes"));
        string root = isVersion1 ? Version1Root : Version2Root;
        if (!isVersion1 && !File.ReadAllText(Path.Join(root, "cgroup.subtree_control")).Contains("memory", StringComparison.Ordinal))
        {
            reason = "the cgroup v2 root does not delegate the memory controller";
            return null;
        }

        string directory = Path.Join(root, $"zipora-test-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(directory);
            File.WriteAllText(Path.Join(directory, isVersion1 ? "memory.limit_in_bytes" : "memory.max"), limitBytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (!isVersion1)
            {
                File.WriteAllText(Path.Join(directory, "memory.swap.max"), "0");
            }
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            reason = $"cannot create a memory cgroup here: {error.Message}";
            TryRemove(directory);
            return null;
        }

        return new MemoryCgroup(directory, isVersion1);
    }

    /// <summary>The file the cgroup's charge is read from (v1 <c>memory.usage_in_bytes</c>, v2 <c>memory.current</c>).</summary>
    public string ChargeFile => Path.Join(_directory, _isVersion1 ? "memory.usage_in_bytes" : "memory.current");

    /// <summary>The file the cgroup's limit is set in (v1 <c>memory.limit_in_bytes</c>, v2 <c>memory.max</c>).</summary>
    public string LimitFile => Path.Join(_directory, _isVersion1 ? "memory.limit_in_bytes" : "memory.max");

    /// <summary>The highest charge the cgroup saw (v1 <c>memory.max_usage_in_bytes</c>, v2 <c>memory.peak</c>; 0 where the kernel keeps none).</summary>
    public long PeakCharge
    {
        get
        {
            string file = Path.Join(_directory, _isVersion1 ? "memory.max_usage_in_bytes" : "memory.peak");
            return File.Exists(file) ? long.Parse(File.ReadAllText(file).Trim(), System.Globalization.CultureInfo.InvariantCulture) : 0;
        }
    }

    /// <summary>Times the kernel's OOM killer acted in the cgroup.</summary>
    public long OomKills
    {
        get
        {
            string file = Path.Join(_directory, _isVersion1 ? "memory.oom_control" : "memory.events");
            foreach (string line in File.ReadLines(file))
            {
                if (line.StartsWith("oom_kill ", StringComparison.Ordinal))
                {
                    return long.Parse(line["oom_kill ".Length..], System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            return 0;
        }
    }

    /// <summary>Runs <c>dotnet <paramref name="assembly"/> <paramref name="arguments"/></c> inside the cgroup; returns its exit code and output.</summary>
    public (int ExitCode, string Output) Run(string assembly, string arguments, TimeSpan timeout)
    {
        // The shell joins the cgroup, then becomes the child: every byte the child maps is charged here.
        var start = new ProcessStartInfo("/bin/sh")
        {
            ArgumentList = { "-c", $"echo $$ > '{Path.Join(_directory, "cgroup.procs")}' && exec dotnet '{assembly}' {arguments}" },
        };
        return ChildProcess.Run(start, timeout);
    }

    public void Dispose() => TryRemove(_directory);

    /// <summary>Removes a cgroup made for a test, waiting up to 5 s for its last process to leave.</summary>
    internal static void TryRemove(string directory)
    {
        // A cgroup can be removed once its last process has gone; the child may still be exiting for a moment.
        for (int attempt = 0; attempt < 50 && Directory.Exists(directory); attempt++)
        {
            try
            {
                Directory.Delete(directory);
            }
            catch (IOException)
            {
                Thread.Sleep(100);
            }
        }
    }
}
