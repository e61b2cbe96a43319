using System;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Runs a test that measures the whole process (resident memory, <c>/proc/self/maps</c>, process-wide counts) in a
/// process of its own: in the suite's process, every test before it leaves garbage, committed heap, live threads and
/// undisposed pools behind, and no collection order makes that go away.
/// </summary>
/// <remarks>
/// The test calls <see cref="RunsElsewhere"/> first. In the suite's process that starts the test assembly again with
/// only this test selected, waits for it, fails with the child's output if the child's test failed or did not run,
/// skips if it skipped, and returns <see langword="true"/>; in the child (marked by an environment variable naming the
/// test) it returns <see langword="false"/> and the test goes on to measure.
/// </remarks>
internal static partial class IsolatedProcess
{
    private const string Variable = "ZIPORA_TESTS_ISOLATED";

    /// <summary>The GC heap hard limit of the children that fill their heap: 256 MB, as in a container with about 340 MB.</summary>
    public const long ContainerHeapLimit = 0x10000000;

    /// <param name="testClass">The test's class.</param>
    /// <param name="method">The test method.</param>
    /// <param name="environment">Variables the child runs with besides the marker (a runtime knob the test needs, say).</param>
    public static bool RunsElsewhere(Type testClass, string method, params (string Name, string Value)[] environment)
    {
        if (IsChildFor(testClass, method))
        {
            return false;
        }

        string name = NameOf(testClass, method);
        (int exitCode, string output) = Run(testClass, method, environment);
        TestContext.Current.TestOutputHelper?.WriteLine(output);
        Match summary = Summary().Match(output);
        Assert.True(summary.Success, $"{name} printed no summary in its own process (exit code {exitCode}):\n{output}");
        Assert.True(int.Parse(summary.Groups["total"].Value, System.Globalization.CultureInfo.InvariantCulture) == 1, $"{name} should have run once in its own process:\n{output}");
        Assert.True(summary.Groups["failed"].Value == "0" && summary.Groups["errors"].Value == "0" && exitCode == 0, $"{name} failed in its own process:\n{output}");
        if (summary.Groups["skipped"].Value != "0")
        {
            Skip.Because($"skipped in its own process: {SkipReason().Match(output).Groups["reason"].Value.Trim()}");
        }

        return true;
    }

    /// <summary>Whether this process is the child started to run <paramref name="method"/>.</summary>
    public static bool IsChildFor(Type testClass, string method) =>
        Environment.GetEnvironmentVariable(Variable) == NameOf(testClass, method);

    /// <summary>Runs <paramref name="method"/> alone in a child process; its exit code and everything it printed.</summary>
    public static (int ExitCode, string Output) Run(Type testClass, string method, params (string Name, string Value)[] environment) =>
        Run(testClass, method, TimeSpan.FromMinutes(5), environment);

    /// <summary>
    /// <c>Run</c> bounded by <paramref name="timeout"/>: a child that
    /// hangs (the exit probes' children end the process themselves) fails the test with <see cref="TimeoutException"/>.
    /// </summary>
    public static (int ExitCode, string Output) Run(Type testClass, string method, TimeSpan timeout, params (string Name, string Value)[] environment)
    {
        string name = NameOf(testClass, method);
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { testClass.Assembly.Location, "-method", name, "-parallel", "none", "-noColor", "-diagnostics" },
        };
        start.Environment[Variable] = name;
        foreach ((string variable, string value) in environment)
        {
            start.Environment[variable] = value;
        }

        return ChildProcess.Run(start, timeout);
    }

    /// <summary>
    /// <see cref="RunsElsewhere"/> for a test that fills its process's GC heap: the child runs under a GC heap hard
    /// limit of <paramref name="heapHardLimit"/> bytes (a container's, where the runtime takes 75% of the memory
    /// limit), with workstation GC.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The test passed if the child's summary says so. The runner's own threads share the full heap for a moment and
    /// may then fail with a fatal <see cref="OutOfMemoryException"/> of their own, which ends the child with exit code
    /// 2 after the summary; any other exit code, or any other fatal error, fails the test.
    /// </para>
    /// <para>
    /// Two of the runtime's own threads end a process at the limit whatever its code does, found in crash reports of
    /// these children under CPU load: the thread pool's gate thread, which starts a worker when queued work waits half
    /// a second (<c>PortableThreadPool.GateThread</c>, <c>CreateWorkerThread</c>), and the finalizer of a dead thread's
    /// work-queue locals, which makes a generic static the first time it runs. The child runs with the gate thread's
    /// starvation detection off (workers are still started as work is queued) and has that finalizer run once with
    /// room before the test (<see cref="HeapFiller.LetTheRuntimeFinalizeAThreadPoolUser"/>). A third: the runtime's
    /// timer thread making a worker for a timer's callback when the idle ones had ended; the child keeps every worker
    /// it makes and makes them with room (<see cref="HeapFiller.StartTheThreadPoolsWorkers"/>). A fourth: a worker
    /// dispatching queued work makes one more (<c>MaybeAddWorkingWorker</c>) once hill climbing has raised the thread
    /// goal above the workers made; in 2 of 16 runs of one child alone on the old code. With hill climbing off the goal
    /// stays the minimum the child made with room. A fifth: the tiered compilation's background worker, which
    /// recompiles hot methods at any moment and, resolving a type named in metadata (<c>TypeNameResolver</c>, called
    /// from the runtime), ran out of memory with no managed caller to catch it; in 1 of 19 runs of the
    /// <c>FailedDisposeSafetyTests</c> timer child under two busy loops, and once in CI. The child compiles every
    /// method once, fully optimized, on the thread that first calls it (<c>DOTNET_TieredCompilation=0</c>), so no
    /// thread of the runtime's compiles later.
    /// </para>
    /// </remarks>
    public static bool RunsElsewhereAtHeapLimit(Type testClass, string method, long heapHardLimit = ContainerHeapLimit)
    {
        if (IsChildFor(testClass, method))
        {
            HeapFiller.LetTheRuntimeFinalizeAThreadPoolUser();
            HeapFiller.StartTheThreadPoolsWorkers();
            return false;
        }

        string name = NameOf(testClass, method);
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { testClass.Assembly.Location, "-method", name, "-parallel", "none", "-noColor" },
        };
        start.Environment[Variable] = name;
        start.Environment["DOTNET_GCHeapHardLimit"] = $"0x{heapHardLimit:x}";
        start.Environment["DOTNET_gcServer"] = "0";
        start.Environment["DOTNET_ThreadPool_DisableStarvationDetection"] = "1";
        start.Environment["DOTNET_ThreadPool_ThreadsToKeepAlive"] = "-1";
        start.Environment["DOTNET_HillClimbing_Disable"] = "1";
        start.Environment["DOTNET_TieredCompilation"] = "0";
        // As long as the other children's: FailedTrimSafetyTests' sweep took 58 s (37 s of CPU) beside other test runs
        // (load average 20 on 2 cores), and did not finish within 3 minutes beside more of them.
        (int exitCode, string output) = ChildProcess.Run(start, TimeSpan.FromMinutes(5));
        TestContext.Current.TestOutputHelper?.WriteLine(output);
        bool passed = output.Contains("Total: 1, Errors: 0, Failed: 0", StringComparison.Ordinal);
        bool runnerRanOutOfMemory = exitCode == 2 && output.Contains("[FATAL ERROR] System.OutOfMemoryException", StringComparison.Ordinal);
        Assert.True(passed && (exitCode == 0 || runnerRanOutOfMemory), $"in its own process (exit code {exitCode}):\n{output}");
        return true;
    }

    private static string NameOf(Type testClass, string method) => $"{testClass.FullName}.{method}";

    [GeneratedRegex(@"Total: (?<total>\d+), Errors: (?<errors>\d+), Failed: (?<failed>\d+), Skipped: (?<skipped>\d+)")]
    private static partial Regex Summary();

    [GeneratedRegex(@"\[SKIP\](?<reason>[^\n]*)")]
    private static partial Regex SkipReason();
}
