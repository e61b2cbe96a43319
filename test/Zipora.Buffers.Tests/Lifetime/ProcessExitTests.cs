using System;
using System.Buffers;
using System.Diagnostics;
using System.Reflection;
using Zipora.Buffers.ContainerProbe;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A process ends while the pools are busy (<see cref="ExitStorm"/>: rents and writes on other threads, trims and idle
/// ticks running, leaked owners and dropped pools waiting for the finalizer, copies pending) and exits as it meant to:
/// with its own exit code, never a crash (139 SIGSEGV, 135 SIGBUS) nor a hang.
/// </summary>
/// <remarks>
/// The process that ends is the container probe, a plain program: the test runner handles unhandled exceptions itself
/// (it reports them and keeps the process alive), so an exit by one can only be seen in a program of one's own.
/// </remarks>
public sealed class ProcessExitTests
{
    // What the runtime does with an unhandled exception on Linux: it prints it and aborts (128 + SIGABRT).
    private const int Abort = 128 + 6;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public void EnvironmentExitWhileThePoolsAreBusyExitsWithItsCode() => AssertProbeExited("exit", ExitStorm.ExitCode);

    [Fact]
    public void ReturningFromMainWhileThePoolsAreBusyExitsWithItsCode() => AssertProbeExited("return", ExitStorm.ExitCode);

    [Fact]
    public void AnUnhandledExceptionOnAnotherThreadWhileThePoolsAreBusyEndsTheProcessAsItsOwn()
    {
        Skip.Unless(OperatingSystem.IsLinux(), "the exit code of an abort is Linux's");
        string output = AssertProbeExited("throw", Abort);
        Assert.Contains(ExitStorm.IntendedFailure, output, StringComparison.Ordinal);
    }

    [Fact]
    public void EnvironmentExitWhileAPluginContextUsesThePoolsExitsWithItsCode()
    {
        // At exit the runtime raises every load context's Unloading event, the plugin's too, while its threads still
        // rent; in a child of the test runner, as Environment.Exit ends it whatever the runner does.
        if (IsolatedProcess.IsChildFor(GetType(), nameof(EnvironmentExitWhileAPluginContextUsesThePoolsExitsWithItsCode)))
        {
            var context = new PluginContext(AppContext.BaseDirectory);
            Assembly plugin = context.LoadFromAssemblyName(typeof(ExitStorm).Assembly.GetName());
            _ = plugin.GetType(typeof(ExitStorm).FullName!, throwOnError: true)!.GetMethod(nameof(ExitStorm.Start))!.Invoke(null, null);
            using (IMemoryOwner<byte> owner = TieredMemoryPool.Shared.Rent(4096))
            {
                owner.Memory.Span.Fill(1);
            }

            Environment.Exit(ExitStorm.ExitCode);
        }

        (int exitCode, string output) = IsolatedProcess.Run(GetType(), nameof(EnvironmentExitWhileAPluginContextUsesThePoolsExitsWithItsCode), s_timeout);
        Assert.True(exitCode == ExitStorm.ExitCode, $"the child should have exited with {ExitStorm.ExitCode}, not {exitCode}:\n{output}");
    }

    private static string AssertProbeExited(string mode, int expected)
    {
        var start = new ProcessStartInfo("dotnet") { ArgumentList = { ContainerProbeOutput.Probe, "exit", mode } };
        (int exitCode, string output) = ChildProcess.Run(start, s_timeout);
        TestContext.Current.TestOutputHelper?.WriteLine(output);
        Assert.Contains("RESULT started=1", output, StringComparison.Ordinal);
        Assert.True(exitCode == expected, $"the probe ({mode}) should have exited with {expected}, not {exitCode}:\n{output}");
        return output;
    }
}
