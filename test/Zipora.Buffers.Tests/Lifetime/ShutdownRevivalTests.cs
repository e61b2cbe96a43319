using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// While a process ends, the finalizer thread still runs: users' finalizers bring pools, owners and writers back to
/// life and use them (<see cref="ResurrectingUser"/>), beside the pools' own finalizers, and a process-exit handler
/// uses them too. Whatever the pool refuses it refuses with <see cref="ObjectDisposedException"/>; the process exits
/// with its own code, never crashed or hung.
/// </summary>
public sealed class ShutdownRevivalTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public void ObjectsRevivedByUsersFinalizersWhileTheProcessExitsNeverCrashIt()
    {
        if (IsolatedProcess.IsChildFor(GetType(), nameof(ObjectsRevivedByUsersFinalizersWhileTheProcessExitsNeverCrashIt)))
        {
            for (int round = 0; round < 4; round++)
            {
                ResurrectingUser.Drop(200);
                GC.Collect();
            }

            GC.WaitForPendingFinalizers();
            Assert.True(ResurrectingUser.Counts.Uses > 0, "no user's finalizer ran");
            ResurrectingUser.Drop(200);
            GC.Collect();
            AppDomain.CurrentDomain.ProcessExit += static (_, _) =>
            {
                ResurrectingUser.UseTheRevived();
                using IMemoryOwner<byte> owner = TieredMemoryPool.Shared.Rent(4096);
                owner.Memory.Span.Fill(4);
            };

            // Ends with finalizers of the last round still running.
            Environment.Exit(43);
        }

        (int exitCode, string output) = IsolatedProcess.Run(GetType(), nameof(ObjectsRevivedByUsersFinalizersWhileTheProcessExitsNeverCrashIt), s_timeout);
        TestContext.Current.TestOutputHelper?.WriteLine(output);
        Assert.True(exitCode == 43, $"the child should have exited with 43, not {exitCode}:\n{output}");
    }
}
