using System;
using System.Threading;

[assembly: AssemblyFixture(typeof(Zipora.Buffers.Tests.BackgroundFailureWatch))]

namespace Zipora.Buffers.Tests;

/// <summary>
/// Fails the run when the pools' background work (ticks, trims under pressure, finalizers' work) threw anywhere in it
/// except where a test provoked it: that work now reports a failure and goes on (<see cref="BackgroundFailures"/>),
/// where it used to end the test process, so without this watch a bug on those paths would pass unseen.
/// </summary>
[CollectionDefinition(ProvokingTests, DisableParallelization = true)]
public sealed class BackgroundFailureWatch : IDisposable
{
    /// <summary>
    /// The collection of the tests that make background work fail on purpose: it runs alone, so the failures each of
    /// them counts are its own.
    /// </summary>
    public const string ProvokingTests = "tests that make background work fail";

    private static long s_provoked;
    private readonly long _atStart = BackgroundFailures.Count;

    /// <summary>Counts failures a test caused on purpose (it runs alone, in <see cref="ProvokingTests"/>).</summary>
    public static void Provoked(long failures) => Interlocked.Add(ref s_provoked, failures);

    /// <summary>
    /// Counts every failure reported since the count was <paramref name="countBefore"/> as provoked, once the background
    /// work the test set off has finished (<see cref="BackgroundWork.WaitUntilQuiet"/>): a failure is counted when it is
    /// caught, which a descheduled thread may do after the test ends.
    /// </summary>
    public static void ProvokedSince(long countBefore)
    {
        BackgroundWork.WaitUntilQuiet();
        Provoked(BackgroundFailures.Count - countBefore);
    }

    public void Dispose()
    {
        long unexpected = BackgroundFailures.Count - _atStart - Interlocked.Read(ref s_provoked);
        if (unexpected != 0)
        {
            (string? work, Exception? error) = BackgroundFailures.Last;
            throw new InvalidOperationException($"the pools' background work failed {unexpected} times in this run without a test provoking it; the last failure was {work}: {error}", error);
        }
    }
}
