using System;
using System.Globalization;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A cgroup whose hugetlb controller limits the 2 MB pages its processes may fault in (<c>hugetlb.2MB.max</c> under
/// cgroup v2, <c>hugetlb.2MB.limit_in_bytes</c> under a v1 hugetlb hierarchy), as a container's runtime sets it; a
/// child test process joins it with <see cref="JoinFromChild"/>. Needs root on Linux; removed again on dispose.
/// </summary>
/// <remarks>
/// The limit is charged when a page is faulted, not when it is mapped: a process over it gets a SIGBUS at its touch.
/// Where the host's v2 root does not pass the controller to its children yet, it is turned on for the test and off
/// again afterwards.
/// </remarks>
internal sealed class HugetlbCgroup : IDisposable
{
    /// <summary>The environment variable that hands the cgroup's directory to the child process.</summary>
    public const string Variable = "ZIPORA_TESTS_HUGETLB_CGROUP";

    private const string Version1Root = "/sys/fs/cgroup/hugetlb";
    private static readonly string[] s_version2Roots = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

    private readonly string _root;
    private readonly bool _enabledController;

    private HugetlbCgroup(string root, string directory, bool enabledController)
    {
        _root = root;
        Directory = directory;
        _enabledController = enabledController;
    }

    /// <summary>The cgroup's directory.</summary>
    public string Directory { get; }

    /// <summary>Creates a cgroup that may fault in <paramref name="limitBytes"/> of 2 MB hugepages; null with <paramref name="reason"/> where that cannot be done.</summary>
    public static HugetlbCgroup? TryCreate(long limitBytes, out string reason)
    {
        reason = string.Empty;
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            reason = "creating a hugetlb cgroup needs root on Linux";
            return null;
        }

        bool isVersion1 = File.Exists(Path.Join(Version1Root, "hugetlb.2MB.limit_in_bytes"));
        string? root = isVersion1 ? Version1Root : Array.Find(s_version2Roots, IsVersion2RootWithHugetlb);
        if (root is null)
        {
            reason = "no cgroup hierarchy here offers the hugetlb controller";
            return null;
        }

        string directory = Path.Join(root, $"zipora-hugetlb-{Guid.NewGuid():N}");
        bool enabled = false;
        try
        {
            enabled = !isVersion1 && EnableControllerForChildren(root);
            System.IO.Directory.CreateDirectory(directory);
            string limitFile = isVersion1 ? "hugetlb.2MB.limit_in_bytes" : "hugetlb.2MB.max";
            File.WriteAllText(Path.Join(directory, limitFile), limitBytes.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            reason = $"cannot create a hugetlb cgroup here: {error.Message}";
            new HugetlbCgroup(root, directory, enabled).Dispose();
            return null;
        }

        return new HugetlbCgroup(root, directory, enabled);
    }

    /// <summary>
    /// Moves the limit from faults to reservations: <c>hugetlb.2MB.rsvd.max</c> (cgroup v2, Linux 5.7) is charged at
    /// <c>mmap</c>, which then fails with ENOMEM, and the fault limit is lifted. False where the cgroup has no such file.
    /// </summary>
    private bool TryLimitReservationsInstead(long limitBytes)
    {
        string reservations = Path.Join(Directory, "hugetlb.2MB.rsvd.max");
        if (!File.Exists(reservations))
        {
            return false;
        }

        File.WriteAllText(reservations, limitBytes.ToString(CultureInfo.InvariantCulture));
        File.WriteAllText(Path.Join(Directory, "hugetlb.2MB.max"), "max");
        return true;
    }

    /// <summary>
    /// <see cref="IsolatedProcess.RunsElsewhere"/> inside a hugetlb cgroup: in the suite's process, reserves
    /// <paramref name="reservedPages"/> hugepages, makes a cgroup that may fault in <paramref name="limitBytes"/> of them
    /// (or reserve them, with <paramref name="limitReservations"/>), runs the test in a child given the cgroup (which it
    /// joins with <see cref="JoinFromChild"/>), and returns <see langword="true"/>; skips where any of it cannot be done.
    /// In the child: false.
    /// </summary>
    public static bool RunsElsewhereInside(Type testClass, string method, long limitBytes, int reservedPages = 8, bool limitReservations = false)
    {
        if (IsolatedProcess.IsChildFor(testClass, method))
        {
            return false;
        }

        using HugePageReservation? reservation = HugePageReservation.TryReserve(reservedPages, out string reason);
        Skip.When(reservation is null, reason);
        using HugetlbCgroup? cgroup = TryCreate(limitBytes, out reason);
        Skip.When(cgroup is null, reason);
        Skip.When(limitReservations && !cgroup.TryLimitReservationsInstead(limitBytes), "this hugetlb cgroup has no reservation limit (cgroup v2, Linux 5.7)");
        return IsolatedProcess.RunsElsewhere(testClass, method, (Variable, cgroup.Directory));
    }

    /// <summary>Moves this process (every thread of it) into the cgroup named by <see cref="Variable"/>.</summary>
    public static void JoinFromChild()
    {
        string directory = Environment.GetEnvironmentVariable(Variable)
            ?? throw new InvalidOperationException($"{Variable} names no cgroup: the parent test sets it");
        File.WriteAllText(Path.Join(directory, "cgroup.procs"), Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>The bytes of 2 MB hugepages the cgroup named by <see cref="Variable"/> is charged for now.</summary>
    public static long ChargedBytesFromChild()
    {
        string directory = Environment.GetEnvironmentVariable(Variable)!;
        string file = File.Exists(Path.Join(directory, "hugetlb.2MB.current")) ? "hugetlb.2MB.current" : "hugetlb.2MB.usage_in_bytes";
        return long.Parse(File.ReadAllText(Path.Join(directory, file)).Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// How many faults the cgroup named by <see cref="Variable"/> refused at its limit so far (the <c>max</c> count of
    /// <c>hugetlb.2MB.events</c>); null under cgroup v1, which counts none.
    /// </summary>
    public static long? LimitHitsFromChild()
    {
        string events = Path.Join(Environment.GetEnvironmentVariable(Variable)!, "hugetlb.2MB.events");
        if (!File.Exists(events))
        {
            return null;
        }

        foreach (string line in File.ReadLines(events))
        {
            if (line.StartsWith("max ", StringComparison.Ordinal))
            {
                return long.Parse(line["max ".Length..].Trim(), CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidDataException($"{events} has no max line");
    }

    public void Dispose()
    {
        MemoryCgroup.TryRemove(Directory);
        if (_enabledController)
        {
            try
            {
                File.WriteAllText(Path.Join(_root, "cgroup.subtree_control"), "-hugetlb");
            }
            catch (IOException)
            {
                // Another cgroup below the root uses the controller now: it stays on, as it was needed.
            }
        }
    }

    private static bool IsVersion2RootWithHugetlb(string root) =>
        File.Exists(Path.Join(root, "cgroup.controllers"))
        && NamesHugetlb(File.ReadAllText(Path.Join(root, "cgroup.controllers")));

    /// <summary>Turns the controller on for the root's children; whether this call did (and so must turn it off).</summary>
    private static bool EnableControllerForChildren(string root)
    {
        string control = Path.Join(root, "cgroup.subtree_control");
        if (NamesHugetlb(File.ReadAllText(control)))
        {
            return false;
        }

        File.WriteAllText(control, "+hugetlb");
        return true;
    }

    private static bool NamesHugetlb(string controllers) =>
        Array.IndexOf(controllers.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries), "hugetlb") >= 0;
}
