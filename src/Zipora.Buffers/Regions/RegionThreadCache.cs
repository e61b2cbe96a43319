using System;
using System.Runtime.CompilerServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers;

/// <summary>
/// A region tier's slot for one thread: the region this thread returned last, kept for its next rent of that size,
/// with the thread's counters.
/// </summary>
/// <remarks>
/// <para>
/// One region, not one per size: steady traffic of one size rents and returns the same region without a lock or an
/// interlocked instruction, and a thread never holds more than one idle region of a tier. A return that finds the
/// slot taken parks the newer region and sends the older one to the shared cache, so the slot always holds the
/// thread's most recently returned region (its pages are the likeliest to be resident).
/// </para>
/// <para>
/// Only the owning thread writes <see cref="ParkedBuffer"/> and its counters, inside the handshake on <see cref="HandshakeCache.InUse"/>;
/// trims, idle release and disposal empty the slot while the owner is kept out by that handshake. A parked region
/// still counts as in use in the tier's shared counts (parking and taking it touch nothing shared); the statistics
/// subtract the parked regions and add the slot's hits when they are read. The tier is named by
/// <see cref="ThreadOwnedCache.RegistryId"/>; the parked region refers to its tier, but a trim, the idle release or
/// the tier's disposal always empties the slot, so a dropped pool's memory is never held by a thread.
/// </para>
/// </remarks>
internal sealed class RegionThreadCache : HandshakeCache
{
    public RegionThreadCache(int classCount)
    {
        ParksByClass = new long[classCount];
        DrainedByClass = new long[classCount];
    }

    /// <summary>
    /// The buffer of the region this thread returned last and has not rented again, if any: the buffer, not the region,
    /// so a rent reaches what it hands out with one load less on its path (see <see cref="ParkedRegion"/>).
    /// </summary>
    public NativeMemoryManager? ParkedBuffer;

    /// <summary>
    /// The size class of <see cref="ParkedBuffer"/>'s region, written with it by the owner, so a rent checks the class
    /// beside the buffer instead of through its region. Only the owner reads it, and only while a buffer is parked.
    /// </summary>
    public int ParkedClassIndex;

    /// <summary>
    /// The idle clock's tick of the last park, which is the parked region's return time: a slot unused for a whole delay
    /// gives back its region and reservation, and a region taken from the slot is unmapped no sooner than a delay after it.
    /// </summary>
    public long LastParkAt;

    /// <summary>
    /// Bytes of the tier's cache limits held for this slot: a region up to this long parks without asking. Written
    /// under the tier's gate (by the owner, or by a trim while the owner is kept out); each tick of the idle release
    /// shrinks it to the region parked, so it never holds room for a longer region the thread no longer parks.
    /// </summary>
    public long ReservedBytes;

    /// <summary>Regions of each class parked by this thread, less those a later return sent on to the shared cache.</summary>
    public readonly long[] ParksByClass;

    /// <summary>Parked regions of each class taken away by trims, the idle release or disposal.</summary>
    public readonly long[] DrainedByClass;

    /// <summary>Bytes asked for by this thread's rents served from the slot.</summary>
    public long RequestedBytes;

    /// <summary>
    /// Parks <paramref name="buffer"/>, of size class <paramref name="classIndex"/>, at tick <paramref name="now"/>, and
    /// counts the park: the buffer and its class are always written together. The owner, inside the handshake.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Park(NativeMemoryManager buffer, int classIndex, long now)
    {
        LastParkAt = now;
        ParkedBuffer = buffer;
        ParkedClassIndex = classIndex;
        ParksByClass[classIndex]++;
    }

    /// <summary>The region of the parked buffer, if any; the buffer is read once, so a racy reader sees one region whole.</summary>
    public Region? ParkedRegion => ParkedBuffer is { } buffer ? Region.Of(buffer) : null;

    /// <summary>
    /// Rents of class <paramref name="classIndex"/> this thread served from its slot. Read racily while the owner parks
    /// (it counts the park just after it parks), the difference may miss the park for a moment: never below zero.
    /// </summary>
    public long HitsOf(int classIndex) =>
        Math.Max(0, ParksByClass[classIndex] - DrainedByClass[classIndex] - (ParkedRegion is { } parked && parked.ClassIndex == classIndex ? 1 : 0));
}
