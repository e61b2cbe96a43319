using System;
using System.Collections.Generic;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// For the tests of a heap near its hard limit, in a child process started with one: the heap filled with written
/// arrays, and the memory-pressure watcher's passes waited out.
/// </summary>
internal static class HeapPressurePasses
{
    private const int Megabyte = 1024 * 1024;

    /// <summary>Adds <paramref name="megabytes"/> written 1 MB arrays to <paramref name="heap"/>.</summary>
    public static void Fill(List<byte[]> heap, long megabytes)
    {
        for (long i = 0; i < megabytes; i++)
        {
            byte[] chunk = new byte[Megabyte];
            chunk.AsSpan().Fill(2);
            heap.Add(chunk);
        }
    }

    /// <summary>
    /// Waits out three passes of the watcher: each collection runs its sentinel, and its passes rest a second apart.
    /// Returns the heap's state, for the assertions' messages.
    /// </summary>
    public static string WaitOutThree()
    {
        for (int pass = 0; pass < 3; pass++)
        {
            Thread.Sleep(1_100);
            GC.Collect();
            BackgroundWork.WaitUntilQuiet();
        }

        GCMemoryInfo info = GC.GetGCMemoryInfo();
        return $"heap committed {info.TotalCommittedBytes / Megabyte} MB of {info.TotalAvailableMemoryBytes / Megabyte} MB";
    }
}
