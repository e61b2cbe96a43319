using System;
using System.Buffers;
using System.Collections.Generic;
using System.Reflection;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The instances a member of the public surface is called on (a live one and, for what can be disposed, a disposed
/// one), and the calls reflection cannot make: members that take or give a span, a ref struct no boxed call can pass.
/// </summary>
internal static class SurfaceTargets
{
    /// <summary>The instances of <paramref name="type"/> to call an instance member on, each labelled.</summary>
    public static IEnumerable<(string Label, Func<SurfaceContext, object> Make)> Of(Type type)
    {
        if (type == typeof(TieredMemoryPool))
        {
            yield return ("pool", context => context.Pool);
            yield return ("disposed pool", context => context.DisposedPool());
        }
        else if (type == typeof(TieredArrayPool))
        {
            yield return ("array pool", _ => new TieredArrayPool(new TieredArrayPoolOptions { Name = "api-surface-arrays" }));
        }
        else if (type == typeof(SegmentedBufferWriter))
        {
            yield return ("writer", context => context.Writer());
            yield return ("disposed writer", context => context.Writer(disposed: true));
        }
        else if (type == typeof(SegmentedMemoryStream))
        {
            yield return ("stream", context => context.Stream());
            yield return ("disposed stream", context => context.Stream(disposed: true));
        }
        else if (type == typeof(TieredMemoryPoolFactory))
        {
            yield return ("factory", context => new TieredMemoryPoolFactory(context.Pool));
            yield return ("factory over a disposed pool", context => new TieredMemoryPoolFactory(context.DisposedPool()));
        }
        else if (type == typeof(NativeMemoryManager))
        {
            yield return ("caller-owned manager", context => context.Track(new NativeMemoryManager(context.NativeBlock, SurfaceContext.NativeBlockLength)));
            yield return ("disposed manager", context =>
            {
                var manager = new NativeMemoryManager(context.NativeBlock, SurfaceContext.NativeBlockLength);
                manager.Dispose();
                return manager;
            });
        }
        else if (type == typeof(PageAllocator))
        {
            yield return ("PageAllocator.Default", _ => PageAllocator.Default);
            yield return ("PageAllocator.Portable", _ => PageAllocator.Portable);
            yield return ("PageAllocator.PinnedArrays", _ => PageAllocator.PinnedArrays);
        }
        else if (type == typeof(HugePageInfo))
        {
            yield return ("HugePageInfo.Read()", _ => HugePageInfo.Read());
        }
        else if (type == HandedOut.BlockOwner)
        {
            yield return ("owner", context => context.Owner());
            yield return ("disposed owner", context => context.Owner(disposed: true));
        }
        else if (type == HandedOut.OwnedMemoryPool)
        {
            yield return ("factory view", context => context.Track(new TieredMemoryPoolFactory(context.Pool).Create()));
            yield return ("disposed factory view", context =>
            {
                MemoryPool<byte> view = new TieredMemoryPoolFactory(context.Pool).Create();
                view.Dispose();
                return view;
            });
        }
        else if (type == typeof(TieredMemoryPoolStatistics))
        {
            // A snapshot, not made with new(): its tiers are required members, which C# does not let a caller leave out.
            yield return ("pool statistics", context => context.Pool.GetStatistics());
        }
        else if (type == typeof(TieredArrayPoolStatistics))
        {
            yield return ("array pool statistics", _ => new TieredArrayPool(new TieredArrayPoolOptions { Name = "api-surface-arrays" }).GetStatistics());
        }
        else if (type.GetConstructor(Type.EmptyTypes) is { } constructor)
        {
            // Options and statistics: plain objects, made as a caller makes them.
            yield return ($"new {type.Name}()", _ => constructor.Invoke(null));
        }
        else
        {
            throw new NotSupportedException($"No instance of {type} to call: add one to SurfaceTargets.");
        }
    }

    /// <summary>
    /// Calls reflection cannot make (a span parameter or result), by doc ID; a span parameter is given as a byte array
    /// (see <see cref="SpanCarrier"/>).
    /// </summary>
    public static readonly Dictionary<string, Func<object, object?[], object?>> SpanCalls = new(StringComparer.Ordinal)
    {
        ["M:Zipora.Buffers.SegmentedBufferWriter.GetSpan(System.Int32)"] = (target, args) => ((SegmentedBufferWriter)target).GetSpan((int)args[0]!).Length,
        ["M:Zipora.Buffers.SegmentedBufferWriter.CopyTo(System.Span{System.Byte})"] = (target, args) => Call(() => ((SegmentedBufferWriter)target).CopyTo(Span(args[0]))),
        ["M:Zipora.Buffers.SegmentedMemoryStream.Read(System.Span{System.Byte})"] = (target, args) => ((SegmentedMemoryStream)target).Read(Span(args[0])),
        ["M:Zipora.Buffers.SegmentedMemoryStream.Write(System.ReadOnlySpan{System.Byte})"] = (target, args) => Call(() => ((SegmentedMemoryStream)target).Write(Span(args[0]))),
        ["M:Zipora.Buffers.Native.NativeMemoryManager.GetSpan"] = (target, _) => ((NativeMemoryManager)target).GetSpan().Length,
        ["M:Zipora.Buffers.BlockOwner.GetSpan"] = (target, _) => ((MemoryManager<byte>)target).GetSpan().Length,
    };

    /// <summary>The type a span parameter is given as: a byte array, null for the default span.</summary>
    public static Type SpanCarrier(Type parameter) =>
        parameter == typeof(Span<byte>) || parameter == typeof(ReadOnlySpan<byte>) ? typeof(byte[]) : parameter;

    /// <summary>Whether reflection cannot call <paramref name="method"/> (a span in or out).</summary>
    public static bool NeedsSpanCall(MethodBase method) =>
        (method is MethodInfo info && info.ReturnType.IsByRefLike) || Array.Exists(method.GetParameters(), p => p.ParameterType.IsByRefLike);

    private static Span<byte> Span(object? array) => (byte[]?)array;

    private static object? Call(Action action)
    {
        action();
        return null;
    }

    /// <summary>The internal types the pool hands out as public abstractions, whose public members callers reach.</summary>
    public static class HandedOut
    {
        public static readonly Type BlockOwner = typeof(TieredMemoryPool).Assembly.GetType("Zipora.Buffers.BlockOwner", throwOnError: true)!;

        public static readonly Type OwnedMemoryPool = typeof(TieredMemoryPool).Assembly.GetType("Zipora.Buffers.OwnedMemoryPool", throwOnError: true)!;
    }
}
