using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>The diagnostic mode of one pool: wraps rents in <see cref="DiagnosticOwner"/>s and records what they report.</summary>
internal sealed class PoolDiagnostics
{
    /// <summary>Switches diagnostics on or off without a rebuild: <c>off</c>, <c>sampled</c> or <c>all</c>; wins over the option.</summary>
    public const string EnvironmentVariable = "ZIPORA_BUFFERS_DIAGNOSTICS";

    private readonly DiagnosticLevel _level;
    private readonly int _sampleRate;
    private long _rents;
    private long _leaks;
    private long _doubleDisposes;

    private PoolDiagnostics(DiagnosticLevel level, int sampleRate)
    {
        _level = level;
        _sampleRate = sampleRate;
    }

    /// <summary>Leaked owners seen (garbage collected without dispose).</summary>
    public long Leaks => Volatile.Read(ref _leaks);

    /// <summary>Owners disposed more than once.</summary>
    public long DoubleDisposes => Volatile.Read(ref _doubleDisposes);

    /// <summary>The diagnostics for these options, or <see langword="null"/> when they are off.</summary>
    public static PoolDiagnostics? Create(TieredMemoryPoolOptions options)
    {
        DiagnosticLevel level = ParseLevel(Environment.GetEnvironmentVariable(EnvironmentVariable)) ?? options.Diagnostics;
        return level == DiagnosticLevel.Off ? null : new PoolDiagnostics(level, options.DiagnosticSampleRate);
    }

    internal static DiagnosticLevel? ParseLevel(string? value) => value?.Trim().ToUpperInvariant() switch
    {
        "OFF" or "0" => DiagnosticLevel.Off,
        "SAMPLED" or "1" => DiagnosticLevel.Sampled,
        "ALL" or "2" => DiagnosticLevel.All,
        _ => null,
    };

    // Not inlined, and only its own frame skipped: the pool's frames above it are inlined or not as the JIT decides
    // (a fixed count of two once skipped the renter's own frame when both were inlined), so the stack starts inside
    // the pool and always holds the renter.
    [MethodImpl(MethodImplOptions.NoInlining)]
    public DiagnosticOwner Track(NativeMemoryManager block, string tier)
    {
        long rent = Interlocked.Increment(ref _rents);
        // The first rent and every _sampleRate-th after it: with a rate of 1, every rent.
        bool capture = _level == DiagnosticLevel.All || (rent - 1) % _sampleRate == 0;
        try
        {
            return new DiagnosticOwner(block, this, tier, capture ? new StackTrace(1, fNeedFileInfo: true) : null);
        }
        catch (OutOfMemoryException)
        {
            // No owner, so nobody holds the block: given back now (a return allocates nothing), not left counted in use
            // until its finalizer hands it to the leak quarantine (OwnerAllocationHeapLimitSafetyTests).
            block.Dispose();
            throw;
        }
    }

    /// <summary>Counts a leaked owner and reports it; called from the owner's finalizer, so it never throws.</summary>
    public void ReportLeak(string tier, int bytes, StackTrace? rentedAt)
    {
        Interlocked.Increment(ref _leaks);
        if (!ZiporaBuffersEventSource.Log.IsEnabled())
        {
            return;
        }

        // The renting stack becomes text only for a listener. Out of managed memory (a process at its GC heap limit,
        // where leaks pile up) the event is lost and counted: thrown out of the finalizer, it ended the process
        // (DiagnosticLeakReportHeapLimitSafetyTests).
        try
        {
            ZiporaBuffersEventSource.Log.LeakDetected(tier, bytes, Describe(rentedAt));
        }
        catch (OutOfMemoryException)
        {
            EventsOffTheCaller.CountLost();
        }
    }

    public void ReportDoubleDispose(string tier, int bytes, StackTrace? rentedAt, StackTrace? firstDispose, StackTrace? secondDispose)
    {
        Interlocked.Increment(ref _doubleDisposes);

        // The stacks become text only for a listener, as a leak's do: formatted for nobody, with file and line, a
        // double dispose allocated half a megabyte (DoubleDisposeReportTests).
        if (!ZiporaBuffersEventSource.Log.IsEnabled())
        {
            return;
        }

        string report = $"A {tier} buffer of {bytes} bytes was disposed twice.{Environment.NewLine}" +
            $"First dispose:{Environment.NewLine}{Describe(firstDispose)}{Environment.NewLine}" +
            $"Second dispose:{Environment.NewLine}{Describe(secondDispose)}{Environment.NewLine}" +
            $"Rented at:{Environment.NewLine}{Describe(rentedAt)}";
        ZiporaBuffersEventSource.Log.DoubleDispose(tier, bytes, report);
    }

    private static string Describe(StackTrace? stack) =>
        stack?.ToString() ?? "  (not captured: raise the diagnostic level to All, or lower DiagnosticSampleRate)";
}
