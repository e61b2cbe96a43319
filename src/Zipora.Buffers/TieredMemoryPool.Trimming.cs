namespace Zipora.Buffers;

/// <summary>The pool's trim of every tier, and the read of what the tiers retain that the caps judge it by.</summary>
public sealed partial class TieredMemoryPool
{
    /// <summary>
    /// Trims the tiers, the region tiers first: their trims allocate nothing, and they hold the most idle memory, so
    /// at the GC heap limit what they let go of comes back before a slab tier's trim (which allocates) can run out of
    /// managed memory. Under pressure (<paramref name="pinnedArraysAtOnce"/>) their pinned arrays leave the pool right
    /// after, so the collection a failing allocation of the slab trims sets off finds them. Each tier is trimmed even
    /// when one before it threw; the first exception goes on to the caller.
    /// </summary>
    private static void TrimEveryTier(SmallTier small, MediumTier medium, LargeTier large, HugeTier huge, DeferredUnmaps unmaps, bool pinnedArraysAtOnce)
    {
        try
        {
            huge.Trim();
        }
        finally
        {
            try
            {
                large.Trim();
            }
            finally
            {
                try
                {
                    if (pinnedArraysAtOnce)
                    {
                        unmaps.ReleasePinnedArraysNow();
                    }
                }
                finally
                {
                    try
                    {
                        medium.Trim();
                    }
                    finally
                    {
                        small.Trim();
                    }
                }
            }
        }
    }

    /// <summary>What every tier retains, and the rents and returns so far, read without allocating (the caps' checks).</summary>
    internal (long Retained, long Activity) RetainedAndActivity() => RetainedAndActivityOf(_small, _medium, _large, _huge);

    /// <summary>
    /// What the given tiers retain, and their rents and returns so far, read without allocating: static, so the cap's
    /// trim (<see cref="LimitTrim"/>) reads it through the tiers without keeping the pool reachable.
    /// </summary>
    private static (long Retained, long Activity) RetainedAndActivityOf(SmallTier small, MediumTier medium, LargeTier large, HugeTier huge)
    {
        (long smallRetained, long smallActivity) = small.RetainedAndActivity();
        (long mediumRetained, long mediumActivity) = medium.RetainedAndActivity();
        (long largeRetained, long largeActivity) = large.RetainedAndActivity();
        (long hugeRetained, long hugeActivity) = huge.RetainedAndActivity();
        return (smallRetained + mediumRetained + largeRetained + hugeRetained, smallActivity + mediumActivity + largeActivity + hugeActivity);
    }
}
