using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Zipora.Buffers;

/// <summary>
/// The text form of the statistics: tables with a header row, every column right-aligned under its own header and
/// wide enough for its widest value, byte figures with their unit, so no value can be read against the wrong label.
/// </summary>
internal static class StatisticsText
{
    private static readonly string[] s_tierColumns =
        ["tier", "rents", "returns", "hits", "misses", "in use", "retained", "fragmented", "uncarved", "rounding"];

    private static readonly string[] s_classColumns = ["tier", "class", "rents", "in use", "high-water", "cached"];

    /// <summary>Bytes with a binary unit, whole where they divide evenly: <c>512 B</c>, <c>64 KB</c>, <c>63.9 KB</c>, <c>1.50 MB</c>.</summary>
    public static string Bytes(long bytes)
    {
        const long Kilo = 1024;
        long magnitude = Math.Abs(bytes);
        return magnitude switch
        {
            < Kilo => Format($"{bytes} B"),
            < Kilo * Kilo => InUnit(bytes, Kilo, "KB", "F1"),
            < Kilo * Kilo * Kilo => InUnit(bytes, Kilo * Kilo, "MB", "F2"),
            _ => InUnit(bytes, Kilo * Kilo * Kilo, "GB", "F2"),
        };
    }

    /// <summary>One tier as a line of labelled values (each value follows its own label).</summary>
    public static string Tier(TierStatistics tier) => Format(
        $"{tier.Name}: rents {tier.Rents}, returns {tier.Returns}, hits {tier.CacheHits}, misses {tier.CacheMisses}, in use {Bytes(tier.BytesInUse)}, retained {Bytes(tier.BytesRetained)}, fragmented {Bytes(tier.BytesFragmented)}, uncarved {Bytes(tier.BytesUncarved)}, rounding x{tier.RoundingRatio:F3}");

    /// <summary>One size class as a line of labelled values.</summary>
    public static string SizeClass(SizeClassStatistics row) => Format(
        $"{row.Tier} {Bytes(row.ClassSize)}: rents {row.Rents}, in use {row.BuffersInUse}, high-water {row.HighWaterMark}, cached {row.Cached}");

    /// <summary>The tiers as a table, one row each, with a header row.</summary>
    public static void AppendTierTable(StringBuilder text, IEnumerable<TierStatistics> tiers)
    {
        var rows = new List<string[]> { s_tierColumns };
        foreach (TierStatistics tier in tiers)
        {
            rows.Add(
            [
                tier.Name,
                Count(tier.Rents),
                Count(tier.Returns),
                Count(tier.CacheHits),
                Count(tier.CacheMisses),
                Bytes(tier.BytesInUse),
                Bytes(tier.BytesRetained),
                Bytes(tier.BytesFragmented),
                Bytes(tier.BytesUncarved),
                Format($"x{tier.RoundingRatio:F3}"),
            ]);
        }

        AppendTable(text, rows);
    }

    /// <summary>The size histogram as a table (nothing when no class was rented).</summary>
    public static void AppendClassTable(StringBuilder text, IReadOnlyList<SizeClassStatistics> classes)
    {
        if (classes.Count == 0)
        {
            return;
        }

        var rows = new List<string[]> { s_classColumns };
        foreach (SizeClassStatistics row in classes)
        {
            rows.Add([row.Tier, Bytes(row.ClassSize), Count(row.Rents), Count(row.BuffersInUse), Count(row.HighWaterMark), Count(row.Cached)]);
        }

        AppendTable(text, rows);
    }

    /// <summary>What the backend calls getting and giving back its memory: pinned arrays are not mmap calls.</summary>
    public static (string Get, string GiveBack) BackendCalls(string backend) => backend switch
    {
        "mmap" => ("mmap calls", "munmap calls"),
        "virtualalloc" => ("VirtualAlloc calls", "VirtualFree calls"),
        "pinned-arrays" => ("pinned arrays allocated", "pinned arrays let go"),
        _ => ("native allocations", "native frees"),
    };

    public static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string InUnit(long bytes, long unit, string name, string fraction) => bytes % unit == 0
        ? Format($"{bytes / unit} {name}")
        : ((double)bytes / unit).ToString(fraction, CultureInfo.InvariantCulture) + " " + name;

    private static string Count(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static void AppendTable(StringBuilder text, List<string[]> rows)
    {
        int columns = rows[0].Length;
        var widths = new int[columns];
        foreach (string[] row in rows)
        {
            for (int column = 0; column < columns; column++)
            {
                widths[column] = Math.Max(widths[column], row[column].Length);
            }
        }

        foreach (string[] row in rows)
        {
            // The first column names the row, so it reads left-aligned; figures line up on the right.
            text.Append(row[0].PadRight(widths[0]));
            for (int column = 1; column < columns; column++)
            {
                text.Append("  ").Append(row[column].PadLeft(widths[column]));
            }

            text.AppendLine();
        }
    }
}
