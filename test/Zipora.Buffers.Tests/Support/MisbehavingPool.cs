using System;
using System.Buffers;
using System.Threading;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Another pool than the tiered one, for the segmented buffers: managed arrays, each owner counted out and back in,
/// a second dispose of one counted. It can misbehave: the owners <see cref="Refuses"/> picks throw on dispose (after
/// <see cref="BeforeRefusal"/>), and from rent <see cref="ShortFrom"/> on it gives <see cref="ShortBy"/> bytes less
/// than asked.
/// </summary>
internal sealed class MisbehavingPool : MemoryPool<byte>
{
    private int _outstanding;
    private int _doubleDisposes;

    /// <summary>Rents so far; a rent's index is this count before it.</summary>
    public int Rents { get; set; }

    /// <summary>Owners rented and not given back.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    /// <summary>Owners disposed a second time: a segment given back twice.</summary>
    public int DoubleDisposes => Volatile.Read(ref _doubleDisposes);

    /// <summary>Which rents' owners refuse to be disposed, by the rent's index; none by default.</summary>
    public Func<int, bool> Refuses { get; init; } = static _ => false;

    /// <summary>
    /// What a refusing owner throws, made with the owner: one made when it is thrown, at the heap limit, would be the
    /// runtime's out-of-memory instead.
    /// </summary>
    public Func<int, Exception> Refusal { get; init; } = static index => new InvalidOperationException($"Owner {index} refuses to be disposed.");

    /// <summary>Run by a refusing owner just before it throws (the heap-limit tests fill the heap there).</summary>
    public Action? BeforeRefusal { get; set; }

    public int ShortFrom { get; set; } = int.MaxValue;

    public int ShortBy { get; init; }

    public override int MaxBufferSize => 1 << 20;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        int index = Rents++;
        int size = Math.Max(minBufferSize, 1) - (index >= ShortFrom ? ShortBy : 0);
        Interlocked.Increment(ref _outstanding);
        return new Owner(this, new byte[size], Refuses(index) ? Refusal(index) : null);
    }

    protected override void Dispose(bool disposing)
    {
    }

    private sealed class Owner(MisbehavingPool pool, byte[] array, Exception? refusal) : IMemoryOwner<byte>
    {
        private int _disposed;

        public Memory<byte> Memory => array;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                // Counted for the tests that check it never happens.
                Interlocked.Increment(ref pool._doubleDisposes);
                return;
            }

            if (refusal is not null)
            {
                pool.BeforeRefusal?.Invoke();
                throw refusal;
            }

            Interlocked.Decrement(ref pool._outstanding);
        }
    }
}
