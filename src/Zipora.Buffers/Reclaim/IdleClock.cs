using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A coarse clock that the idle releaser advances once per tick. Returns stamp regions with it by a plain read, which
/// costs the return path nothing, where a real timestamp would cost a clock read per return.
/// </summary>
internal sealed class IdleClock
{
    private long _epoch;

    public long Epoch => Volatile.Read(ref _epoch);

    public long Advance() => Interlocked.Increment(ref _epoch);
}
