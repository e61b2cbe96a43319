using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// For each parameter type of the public surface: a harmless value, and the hostile ones a caller may pass (nulls,
/// signs and extremes, empty and default values, disposed instances, another pool's objects).
/// </summary>
internal static class HostileValues
{
    /// <summary>A value that is valid for the parameter, so a call fails for the one hostile value it is given.</summary>
    public static object? Good(Type type, SurfaceContext context) => type switch
    {
        _ when type.IsByRef => null,
        _ when type == typeof(int) => 16,
        _ when type == typeof(long) => 16L,
        _ when type == typeof(nint) => context.NativeBlock,
        _ when type == typeof(nuint) => (nuint)4096,
        _ when type == typeof(bool) => false,
        _ when type == typeof(byte) => (byte)1,
        _ when type == typeof(string) => "fuzz",
        _ when type == typeof(TimeSpan) => TimeSpan.FromSeconds(1),
        _ when type.IsEnum => Enum.GetValues(type).GetValue(0),
        _ when type == typeof(byte[]) => new byte[16],
        _ when type == typeof(Memory<byte>) => new Memory<byte>(new byte[16]),
        _ when type == typeof(ReadOnlyMemory<byte>) => new ReadOnlyMemory<byte>(new byte[16]),
        _ when type == typeof(SequencePosition) => default(SequencePosition),
        _ when type == typeof(CancellationToken) => CancellationToken.None,
        _ when type == typeof(Stream) => new MemoryStream(),
        _ when type == typeof(IBufferWriter<byte>) => new ArrayBufferWriter<byte>(),
        _ when type == typeof(SegmentedBufferOptions) => context.Options,
        _ when type == typeof(TieredMemoryPoolOptions) => new TieredMemoryPoolOptions { Name = "api-surface-made" },
        _ when type == typeof(TieredArrayPoolOptions) => new TieredArrayPoolOptions(),
        _ when type == typeof(TieredMemoryPool) => context.Pool,
        _ when type == typeof(MemoryPool<byte>) => context.Pool,
        _ when type == typeof(TimeProvider) => TimeProvider.System,
        _ when type == typeof(MemoryPoolOptions) => new MemoryPoolOptions(),
        _ when type == typeof(IServiceCollection) => new ServiceCollection(),
        _ when type == typeof(Action<TieredMemoryPoolOptions>) => (Action<TieredMemoryPoolOptions>)(_ => { }),
        _ when type == typeof(INativeMemoryReleaser) => null,
        _ => throw new NotSupportedException($"No harmless value for {type}: add one to HostileValues."),
    };

    /// <summary>The hostile values of <paramref name="type"/>, each with the label a failure names it by.</summary>
    public static IEnumerable<(string Label, Func<object?> Value)> Of(Type type, SurfaceContext context, object? target)
    {
        if (type.IsByRef)
        {
            // An out parameter takes no value from the caller.
            yield break;
        }

        if (!type.IsValueType)
        {
            yield return ("null", () => null);
        }

        if (type == typeof(int))
        {
            foreach (int value in (int[])[-1, -2, 0, int.MinValue, int.MaxValue])
            {
                yield return (value.ToString(System.Globalization.CultureInfo.InvariantCulture), () => value);
            }
        }
        else if (type == typeof(long))
        {
            foreach (long value in (long[])[-1, 0, long.MinValue, long.MaxValue, int.MaxValue + 1L])
            {
                yield return (value.ToString(System.Globalization.CultureInfo.InvariantCulture), () => value);
            }
        }
        else if (type == typeof(nint))
        {
            foreach (nint value in (nint[])[0, -1, nint.MaxValue])
            {
                yield return ($"(nint){value}", () => value);
            }
        }
        else if (type == typeof(nuint))
        {
            foreach (nuint value in (nuint[])[0, 1, 3, nuint.MaxValue, nuint.MaxValue - 4094, (nuint)1 << 63])
            {
                yield return ($"(nuint){value}", () => value);
            }
        }
        else if (type == typeof(string))
        {
            yield return ("\"\"", () => string.Empty);
            yield return ("\"  \"", () => "  ");
        }
        else if (type == typeof(TimeSpan))
        {
            foreach (TimeSpan value in (TimeSpan[])[TimeSpan.Zero, TimeSpan.FromMilliseconds(-2), TimeSpan.MinValue, TimeSpan.MaxValue, TimeSpan.FromTicks(1)])
            {
                yield return (value.ToString(), () => value);
            }
        }
        else if (type.IsEnum)
        {
            yield return ("(enum)-1", () => Enum.ToObject(type, -1));
            yield return ("(enum)99", () => Enum.ToObject(type, 99));
        }
        else if (type == typeof(byte[]))
        {
            yield return ("byte[0]", () => Array.Empty<byte>());
            yield return ("byte[17]", () => new byte[17]);
            yield return ("byte[1 MB + 1]", () => new byte[(1 << 20) + 1]);
        }
        else if (type == typeof(Memory<byte>) || type == typeof(ReadOnlyMemory<byte>))
        {
            yield return ("default", () => Activator.CreateInstance(type));
        }
        else if (type == typeof(SequencePosition))
        {
            yield return ("(foreign object, 3)", () => new SequencePosition(new object(), 3));
            yield return ("(null, 5)", () => new SequencePosition(null, 5));
            yield return ("another writer's", () => context.Writer().GetReadOnlySequence().End);
        }
        else if (type == typeof(CancellationToken))
        {
            yield return ("cancelled", () => new CancellationToken(canceled: true));
        }
        else if (type == typeof(Stream))
        {
            yield return ("disposed", () =>
            {
                var stream = new MemoryStream();
                stream.Dispose();
                return stream;
            });
            yield return ("read-only", () => new MemoryStream([], writable: false));
            yield return ("a disposed SegmentedMemoryStream", () => context.Stream(disposed: true));
            if (target is Stream)
            {
                yield return ("itself", () => target);
            }
        }
        else if (type == typeof(IBufferWriter<byte>))
        {
            yield return ("a disposed SegmentedBufferWriter", () => context.Writer(disposed: true));
            if (target is IBufferWriter<byte>)
            {
                yield return ("itself", () => target);
            }
        }
        else if (type == typeof(SegmentedBufferOptions))
        {
            yield return ("Pool disposed", () => new SegmentedBufferOptions { Pool = context.DisposedPool() });
            yield return ("MaxLength -1", () => new SegmentedBufferOptions { Pool = context.Pool, MaxLength = -1 });
            yield return ("InitialSegmentSize 0", () => new SegmentedBufferOptions { Pool = context.Pool, InitialSegmentSize = 0 });
            yield return ("InitialSegmentSize int.MaxValue", () => new SegmentedBufferOptions { Pool = context.Pool, InitialSegmentSize = int.MaxValue });
            yield return ("MaxSegmentSize -1", () => new SegmentedBufferOptions { Pool = context.Pool, MaxSegmentSize = -1 });
            yield return ("MaxSegmentSize int.MaxValue", () => new SegmentedBufferOptions { Pool = context.Pool, MaxSegmentSize = int.MaxValue });
        }
        else if (type == typeof(TieredMemoryPool) || type == typeof(MemoryPool<byte>))
        {
            yield return ("disposed pool", () => context.DisposedPool());
        }
        else if (type == typeof(TimeProvider))
        {
            yield return ("zero frequency", () => new FrequencyClock(0));
            yield return ("negative frequency", () => new FrequencyClock(-1));
        }
        else if (type == typeof(MemoryPoolOptions))
        {
            yield return ("Owner \"\"", () => new MemoryPoolOptions { Owner = string.Empty });
        }
        else if (type == typeof(IServiceCollection))
        {
            yield return ("read-only", () =>
            {
                var services = new ServiceCollection();
                services.MakeReadOnly();
                return services;
            });
        }
    }

    /// <summary>A clock whose timestamps convert to no time (or negative time).</summary>
    private sealed class FrequencyClock(long frequency) : TimeProvider
    {
        public override long TimestampFrequency => frequency;
    }
}
