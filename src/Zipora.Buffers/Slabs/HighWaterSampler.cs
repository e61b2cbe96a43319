using System;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// The high-water marks of a slab tier's classes, sampled at each tick of the idle releaser rather than counted on
/// the fast path: the most buffers in use seen in this window and in the last, a window being one idle delay.
/// </summary>
/// <remarks>Only the idle releaser's timer samples; the statistics read racily, which is fine for these figures.</remarks>
internal sealed class HighWaterSampler(int classCount)
{
    private readonly long[] _peak = new long[classCount];
    private readonly long[] _lastPeak = new long[classCount];
    private long _windowStart;

    /// <summary>Records the buffers in use of every class at tick <paramref name="now"/>.</summary>
    public void Sample(long now, long delayInTicks, ReadOnlySpan<long> inUse)
    {
        bool newWindow = now - _windowStart >= delayInTicks;
        if (newWindow)
        {
            _windowStart = now;
        }

        for (int classIndex = 0; classIndex < inUse.Length; classIndex++)
        {
            if (newWindow)
            {
                Volatile.Write(ref _lastPeak[classIndex], _peak[classIndex]);
                Volatile.Write(ref _peak[classIndex], inUse[classIndex]);
            }
            else if (inUse[classIndex] > _peak[classIndex])
            {
                Volatile.Write(ref _peak[classIndex], inUse[classIndex]);
            }
        }
    }

    /// <summary>The most buffers of class <paramref name="classIndex"/> in use at once over this window and the last.</summary>
    public long HighWaterMark(int classIndex) => Math.Max(Volatile.Read(ref _peak[classIndex]), Volatile.Read(ref _lastPeak[classIndex]));
}
