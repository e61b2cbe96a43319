using System;
using System.Diagnostics;
using System.Threading.Tasks;

namespace Zipora.Buffers.Tests;

/// <summary>A child process a test starts and waits for: the isolated tests' and the memory cgroups' children.</summary>
internal static class ChildProcess
{
    /// <summary>
    /// Starts <paramref name="start"/> with its output captured, waits up to <paramref name="timeout"/> and kills it
    /// (with its children) past that, throwing <see cref="TimeoutException"/> with what it printed; returns its exit
    /// code and its output, then its error output. Both streams are read while it runs, so a child that fills one
    /// neither blocks on it nor keeps the wait from timing out.
    /// </summary>
    public static (int ExitCode, string Output) Run(ProcessStartInfo start, TimeSpan timeout)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> errors = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"{start.FileName} {string.Join(' ', start.ArgumentList)} did not finish within {timeout}:\n{output.Result}{errors.Result}");
        }

        // The parameterless wait also waits for the redirected streams to reach their end.
        process.WaitForExit();
        return (process.ExitCode, output.Result + errors.Result);
    }
}
