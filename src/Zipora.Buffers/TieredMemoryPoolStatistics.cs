using System.Collections.Generic;
using System.Text;

namespace Zipora.Buffers;

/// <summary>A snapshot of a <see cref="TieredMemoryPool"/>: one <see cref="TierStatistics"/> per tier and the pool's dealings with the OS.</summary>
public sealed class TieredMemoryPoolStatistics
{
    /// <summary>Requests of 1 to 1023 bytes.</summary>
    public required TierStatistics Small { get; init; }

    /// <summary>Requests from 1 KB up to the mmap threshold.</summary>
    public required TierStatistics Medium { get; init; }

    /// <summary>Requests above the mmap threshold up to the hugepage threshold.</summary>
    public required TierStatistics Large { get; init; }

    /// <summary>Requests above the hugepage threshold.</summary>
    public required TierStatistics Huge { get; init; }

    /// <summary>Name of the OS backend the pool maps pages with (<c>mmap</c>, <c>virtualalloc</c>, <c>portable</c>).</summary>
    public required string Backend { get; init; }

    /// <summary>Calls that asked the OS layer for pages (successful or not).</summary>
    public long MmapCalls { get; init; }

    /// <summary>Calls that gave pages back to the OS.</summary>
    public long MunmapCalls { get; init; }

    /// <summary>
    /// New mappings served by a mapping the pool had let go of and was waiting to unmap (its delay not over), instead of
    /// by the OS: what keeps a pool trimmed often, or held at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>, from
    /// piling up mappings.
    /// </summary>
    public long MappingsReused { get; init; }

    /// <summary>Bytes currently mapped with hugepages: reserved (hugetlb) pages plus ranges advised for transparent hugepages.</summary>
    public long HugepageBytes { get; init; }

    /// <summary>Times a mapping fell back to a lesser backend: hugetlb to transparent hugepages, those to base pages, the OS to the portable allocator.</summary>
    public long FallbackAllocations { get; init; }

    /// <summary>Buffers whose owners were garbage collected without being disposed; the pool reclaimed their memory (after a quarantine of one idle delay).</summary>
    public long LeaksReclaimed { get; init; }

    /// <summary>Bytes of leaked buffers held in quarantine: not handed out, unmapped nor decommitted until one idle delay after their finalizer ran. Their tiers still count them in <c>BytesInUse</c> (never returned) until the quarantine ends: do not add the two.</summary>
    public long BytesQuarantined { get; init; }

    /// <summary>
    /// Bytes the pool has let go of but not yet unmapped: memory returned less than one idle delay ago is decommitted
    /// (its pages dropped) rather than unmapped, so a stale <c>Span</c> still running somewhere writes to a fresh zero
    /// page instead of faulting; it is unmapped once the delay has passed. Where the OS refused to drop the pages (locked
    /// memory: <c>mlockall</c>) they stay committed until that unmap, and the tier counts them in
    /// <see cref="TierStatistics.BytesEvicted"/> only then.
    /// </summary>
    public long BytesAwaitingRelease { get; init; }

    /// <summary>Unmaps the OS refused (for example at <c>vm.max_map_count</c>): the memory stays mapped and counted, and is tried again at every tick.</summary>
    public long UnmapFailures { get; init; }

    /// <summary>
    /// The process's memory limit the pool sized its default caps from: its memory cgroup's limit (a container's),
    /// else the GC's heap hard limit; 0 when there is none.
    /// </summary>
    public long MemoryLimit { get; init; }

    /// <summary>The idle-memory cap in force (<see cref="TieredMemoryPoolOptions.MaxRetainedBytes"/> as set, or as derived from <see cref="MemoryLimit"/>).</summary>
    public long RetainedBytesCap { get; init; }

    /// <summary>Trims made because memory ran short: the cgroup's usage near its limit, or the GC near its high-load threshold.</summary>
    public long PressureTrims { get; init; }

    /// <summary>
    /// Rents refused with <see cref="System.InsufficientMemoryException"/>: at <see cref="TieredMemoryPoolOptions.MaxBytesInUse"/>,
    /// or by the OS even after the pool gave back its cached memory. Each was thrown to its caller (Kestrel logs them at
    /// several levels, as the connection's failure: this count is the one place that sums them).
    /// </summary>
    public long RentsRefused { get; init; }

    /// <summary>Diagnostic mode: owners disposed more than once (each reported as an event with both stacks).</summary>
    public long DoubleDisposes { get; init; }

    /// <summary>Diagnostic mode: owners garbage collected without dispose (each reported as an event with the renting stack).</summary>
    public long LeaksDetected { get; init; }

    /// <summary>
    /// Rents made through the pools <see cref="TieredMemoryPoolFactory"/> created, by the owner they were created for
    /// (such as <c>kestrel</c>). The first 64 owner names are counted apart; the views of every later name count under
    /// <c>(other owners)</c>, so names made per connection or per request neither grow the pool nor the meter's series
    /// (an owner that is itself named <c>(other owners)</c> shares that count).
    /// </summary>
    public IReadOnlyDictionary<string, long> RentsByOwner { get; init; } = new Dictionary<string, long>();

    /// <summary>
    /// The pattern of requests: one row per size class (of every tier) that was rented, with its
    /// rents, buffers in use, recent high-water mark and cached buffers.
    /// </summary>
    public IReadOnlyList<SizeClassStatistics> SizeHistogram { get; init; } = [];

    /// <summary>What the segmented writers and streams renting from the pool hold and have done.</summary>
    public SegmentedBufferStatistics Segmented { get; init; } = new();

    /// <summary>Bytes handed out across all tiers.</summary>
    public long BytesInUse => Small.BytesInUse + Medium.BytesInUse + Large.BytesInUse + Huge.BytesInUse;

    /// <summary>Bytes held from the OS but not handed out, across all tiers.</summary>
    public long BytesRetained => Small.BytesRetained + Medium.BytesRetained + Large.BytesRetained + Huge.BytesRetained;

    /// <summary>Bytes of free blocks pinned by a live neighbour on their page, across all tiers (see <see cref="TierStatistics.BytesFragmented"/>).</summary>
    public long BytesFragmented => Small.BytesFragmented + Medium.BytesFragmented + Large.BytesFragmented + Huge.BytesFragmented;

    /// <summary>Bytes of slab space mapped but not yet cut into buffers, across the slab tiers (see <see cref="TierStatistics.BytesUncarved"/>).</summary>
    public long BytesUncarved => Small.BytesUncarved + Medium.BytesUncarved;

    /// <inheritdoc />
    public override string ToString()
    {
        var text = new StringBuilder();
        StatisticsText.AppendTierTable(text, [Small, Medium, Large, Huge]);
        text.AppendLine();
        StatisticsText.AppendClassTable(text, SizeHistogram);
        if (SizeHistogram.Count > 0)
        {
            text.AppendLine();
        }

        text.AppendLine(Segmented.ToString());
        (string get, string giveBack) = StatisticsText.BackendCalls(Backend);
        string limit = MemoryLimit > 0 ? StatisticsText.Bytes(MemoryLimit) : "none";
        text.AppendLine(StatisticsText.Format($"backend: {Backend}, {MmapCalls} {get}, {MunmapCalls} {giveBack}, {MappingsReused} mappings reused, {StatisticsText.Bytes(HugepageBytes)} on hugepages, {FallbackAllocations} fallbacks"));
        text.AppendLine(StatisticsText.Format($"leaks: {LeaksReclaimed} reclaimed, {StatisticsText.Bytes(BytesQuarantined)} in quarantine; {StatisticsText.Bytes(BytesAwaitingRelease)} awaiting unmap, {UnmapFailures} unmaps refused"));
        if (DoubleDisposes + LeaksDetected > 0)
        {
            text.AppendLine(StatisticsText.Format($"diagnostics: {DoubleDisposes} double disposes, {LeaksDetected} leaks detected"));
        }

        text.Append(StatisticsText.Format($"memory limit: {limit}, idle cap {StatisticsText.Bytes(RetainedBytesCap)}, {PressureTrims} pressure trims, {RentsRefused} rents refused"));
        return text.ToString();
    }
}
