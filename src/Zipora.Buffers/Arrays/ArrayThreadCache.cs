using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>The arrays one thread keeps for one <see cref="TieredArrayPool"/>: a stack per size class, and the thread's counters.</summary>
/// <remarks>
/// <para>
/// The stacks live inline, so the fast path follows one reference from the cache to the slots of the class. Only the
/// owning thread writes a stack, with plain loads and stores, and no handshake: a trim never takes an array out of
/// a stack. It abandons the stack's slots whole instead, swapping them for <see cref="NoStack"/>, and leaves them to
/// the GC with the arrays in them. An owner caught in a rent or return on the abandoned slots finishes on them
/// harmlessly: it hands out an array the trim did not take, or drops one into slots nobody reads again.
/// </para>
/// <para>
/// The counts stay exact all the same. The trim records how many arrays it saw (<see cref="TrimmedCount"/>); when
/// the owner next reaches the class, it finds <see cref="NoStack"/>, counts what racing operations changed in the
/// abandoned slots (<see cref="TrimCorrection"/>) and installs fresh slots.
/// </para>
/// <para>
/// The pool is named by <see cref="ThreadOwnedCache.RegistryId"/>, not referenced: the thread-static last cache may be
/// another pool's, and may outlive its pool, which it must not keep reachable.
/// </para>
/// </remarks>
internal sealed class ArrayThreadCache : ThreadOwnedCache
{
    /// <summary>
    /// The slots of a class the thread has not used yet, does not cache, or whose stack a trim has abandoned: one slot,
    /// which the owner never fills (<see cref="ArrayClassStack.TryPush"/> refuses it by reference), so a rent finds
    /// nothing, a return finds no room, and the owner goes to its slow path.
    /// </summary>
    public static readonly byte[][] NoStack = new byte[1][];

    /// <summary>
    /// The slots of a class while its owner settles the stack a trim abandoned and installs fresh slots: the
    /// statistics then read no count of it (they may be half-cleared), and a trim finds nothing to abandon. Only the
    /// owner's slow path sees it in <see cref="ArrayClassStack.Items"/>, never its fast path.
    /// </summary>
    public static readonly byte[][] Settling = new byte[1][];

    /// <summary>
    /// Per class: arrays the depot moved into the stack or handed out directly, minus those the stack moved to the
    /// depot and those returned past the stack. With the trim counters this makes the rents that hit
    /// <c>Returns - Held + NetTransfers - Trimmed - TrimCorrection</c> (Held being <c>Count - TrimmedCount</c>), so
    /// the fast rent counts nothing. Only the owner writes it.
    /// </summary>
    public ArrayClassValues<long> NetTransfers;

    /// <summary>Per class: rents that found no array and allocated one. Only the owner writes it.</summary>
    public ArrayClassValues<long> Misses;

    /// <summary>
    /// Per class: the count of the stack when a trim abandoned its slots, until the owner installs fresh ones. Only
    /// the trim writes it while the stack has slots, only the owner while it has <see cref="NoStack"/> or <see cref="Settling"/>.
    /// </summary>
    public ArrayClassValues<int> TrimmedCount;

    /// <summary>Per class: arrays in the slots trims abandoned, as the trims counted them. Only the trim writes it.</summary>
    public ArrayClassValues<long> Trimmed;

    /// <summary>
    /// Per class: arrays that operations racing a trim put into (or took from) the slots it abandoned, found by the
    /// owner afterwards. Only the owner writes it.
    /// </summary>
    public ArrayClassValues<long> TrimCorrection;

    private ArrayClassStacks _stacks;

    /// <summary>Creates the cache; each class gets its slots on first use.</summary>
    public ArrayThreadCache(int classCount)
    {
        for (int classIndex = 0; classIndex < classCount; classIndex++)
        {
            _stacks[classIndex].Items = NoStack;
        }
    }

    /// <summary>The stack of a class; <paramref name="classIndex"/> must be below <see cref="ArraySizeClasses.Count"/>, which the pool's length check proves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ArrayClassStack StackOf(int classIndex) =>
        ref Unsafe.Add(ref Unsafe.As<ArrayClassStacks, ArrayClassStack>(ref _stacks), classIndex);

    /// <summary>The arrays of a class the cache holds: those in its slots, less those a trim abandoned with them.</summary>
    public int HeldOf(int classIndex) => Volatile.Read(ref StackOf(classIndex).Count) - Volatile.Read(ref TrimmedCount[classIndex]);

    /// <summary>
    /// The counts of a class for the statistics, read together: the rents that found an array (see
    /// <see cref="NetTransfers"/>), and the arrays the cache holds, none while a trim has abandoned its slots. Then
    /// <paramref name="unsettled"/> is what rents and returns racing the trim took from (negative) or put into those
    /// slots, which the owner settles into the evicted bytes when it next reaches the class; 0 otherwise.
    /// </summary>
    /// <remarks>
    /// Called with the registry's lock held, so no trim runs meanwhile: the slots change only when the owner settles
    /// an abandoned stack, through <see cref="Settling"/> to fresh slots. Counts read across that change may pair the
    /// old count with the cleared trimmed count (every array the trim evicted, counted twice); they are read again as
    /// the settled stack's, holding nothing, off at most by the few arrays the racing operations moved.
    /// </remarks>
    public long CountsOf(int classIndex, out int cached, out int unsettled)
    {
        ref ArrayClassStack stack = ref StackOf(classIndex);
        byte[][] before = Volatile.Read(ref stack.Items);
        int held = HeldOf(classIndex);
        long correction = Volatile.Read(ref TrimCorrection[classIndex]);
        byte[][] after = Volatile.Read(ref stack.Items);
        if (before != after || before == Settling)
        {
            held = 0;
            cached = 0;
            unsettled = 0;
        }
        else
        {
            bool abandoned = before == NoStack;
            unsettled = abandoned ? held : 0;
            cached = abandoned ? 0 : held;
        }

        return HitsWith(classIndex, held, correction);
    }

    /// <summary>The rents of a class on this thread that found an array (see <see cref="NetTransfers"/>).</summary>
    public long HitsOf(int classIndex) => HitsWith(classIndex, HeldOf(classIndex), Volatile.Read(ref TrimCorrection[classIndex]));

    /// <summary>The rents of a class that found an array, with the arrays held and the trims' correction read by the caller.</summary>
    private long HitsWith(int classIndex, int held, long correction) =>
        Volatile.Read(ref StackOf(classIndex).Returns) - held + Volatile.Read(ref NetTransfers[classIndex])
        - Volatile.Read(ref Trimmed[classIndex]) - correction;
}
