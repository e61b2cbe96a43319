using System.Threading;

namespace Zipora.Buffers;

/// <summary>Rents made through the pools handed out for one owner (such as <c>kestrel</c>).</summary>
internal sealed class OwnerCounter
{
    private long _rents;

    public long Rents => Volatile.Read(ref _rents);

    public void CountRent() => Interlocked.Increment(ref _rents);
}
