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

    public static bool RunsElsewhere(Type testClass, string method)
    {
        if (IsChildFor(testClass, method))
        {
            return false;
        }

        string name = NameOf(testClass, method);
        (int exitCode, string output) = Run(testClass, method);
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
    public static (int ExitCode, string Output) Run(Type testClass, string method)
    {
        string name = NameOf(testClass, method);
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { testClass.Assembly.Location, "-method", name, "-parallel", "none", "-noColor", "-diagnostics" },
        };
        start.Environment[Variable] = name;
        return ChildProcess.Run(start, TimeSpan.FromMinutes(5));
    }

    private static string NameOf(Type testClass, string method) => $"{testClass.FullName}.{method}";

    [GeneratedRegex(@"Total: (?<total>\d+), Errors: (?<errors>\d+), Failed: (?<failed>\d+), Skipped: (?<skipped>\d+)")]
    private static partial Regex Summary();

    [GeneratedRegex(@"\[SKIP\](?<reason>[^\n]*)")]
    private static partial Regex SkipReason();
}
