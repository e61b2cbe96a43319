using System.Threading;

namespace Zipora.Buffers.Native;

/// <summary>
/// The smallest hugetlb map of each page size whose pages could not all be faulted in lately, so that maps at least
/// that long are refused for a while without a try. A try is not free: the advice faults in, zeroes and charges every
/// page the hugetlb cgroup still has room for before the one it refuses (a 128 MB map under a 64 MB limit spent 20 ms
/// there, measured, against 11 ms for a 64 MB map that fits), then gives them back; and while it holds them the cgroup
/// is at its limit, so another process of the container that faults a hugetlb page of its own meanwhile gets a
/// SIGBUS. Before, every huge-tier miss tried again.
/// </summary>
/// <remarks>
/// A refusal says that less than its length was left to charge; room comes back only as hugetlb pages are given back,
/// by this process (an unmap or a let-go region's base pages: <see cref="Forget"/>, and the next map tries) or by
/// another of the cgroup (unseen: after <see cref="RetryAfterMilliseconds"/>). Shorter maps are still tried. Read and written without a lock: a race
/// costs one try more or less, and a try is always safe (the advice proves the pages).
/// </remarks>
internal sealed class HugetlbRefusals
{
    /// <summary>How long maps as long as a refused one are not tried.</summary>
    public const long RetryAfterMilliseconds = 1000;

    // By page size: index 0 for 2 MB pages, 1 for 1 GB pages.
    private readonly long[] _smallestRefused = [long.MaxValue, long.MaxValue];
    private readonly long[] _refusedAt = new long[2];

    /// <summary>Whether a map of <paramref name="length"/> in pages of <paramref name="kind"/> would be refused now, by what was refused lately.</summary>
    public bool Covers(PageKind kind, nuint length, long now)
    {
        int size = SizeIndex(kind);
        return (long)length >= Volatile.Read(ref _smallestRefused[size]) && now - Volatile.Read(ref _refusedAt[size]) < RetryAfterMilliseconds;
    }

    /// <summary>Notes that a map of <paramref name="length"/> could not have all its pages at <paramref name="now"/>.</summary>
    public void Record(PageKind kind, nuint length, long now)
    {
        int size = SizeIndex(kind);
        bool expired = now - Volatile.Read(ref _refusedAt[size]) >= RetryAfterMilliseconds;
        if (expired || (long)length < Volatile.Read(ref _smallestRefused[size]))
        {
            Volatile.Write(ref _smallestRefused[size], (long)length);
        }

        Volatile.Write(ref _refusedAt[size], now);
    }

    /// <summary>
    /// Forgets the refusals of pages of <paramref name="kind"/>: this process just gave some back (an unmap, or base pages
    /// mapped over them), so their charge left the cgroup, and a map that did not fit before may now.
    /// </summary>
    public void Forget(PageKind kind) => Volatile.Write(ref _smallestRefused[SizeIndex(kind)], long.MaxValue);

    private static int SizeIndex(PageKind kind) => kind == PageKind.HugeTlb1GB ? 1 : 0;
}
