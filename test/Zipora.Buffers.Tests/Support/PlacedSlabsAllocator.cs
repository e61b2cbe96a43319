using System;
using System.Runtime.InteropServices;
using System.Threading;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The OS layer for the slab heap's address search: one reservation, placed near an address the test names (the top
/// or the bottom of user space), handed out as mappings of one length side by side, in an order the test picks, so
/// slabs lie adjacent and each new one lands first, last or in the middle of the heap's sorted list. A mapping of
/// another length goes to the default allocator. An unmap of a handed-out piece is only noted (and its pages dropped):
/// a piece unmapped twice, or one never handed out, fails the test.
/// </summary>
internal sealed partial class PlacedSlabsAllocator : PageAllocator, IDisposable
{
    private const int ProtRead = 1;
    private const int ProtWrite = 2;
    private const int MapPrivate = 0x02;
    private const int MapAnonymous = 0x20;
    private const int MapNoReserve = 0x4000;
    private const int MadvDontNeed = 4;

    private readonly PageAllocator _inner = Default;
    private readonly object _lock = new();
    private readonly nint _reservation;
    private readonly nuint _reservedLength;
    private readonly nint _start;
    private readonly nuint _piece;
    private readonly int[] _order;
    private readonly bool[] _live;
    private int _handedOut;
    private string? _failure;

    /// <param name="piece">The length of each mapping handed out (and its alignment at most).</param>
    /// <param name="order">The pieces' indexes, in the order they are handed out.</param>
    /// <param name="near">Where the reservation is asked for (a hint: the kernel may place it elsewhere).</param>
    public PlacedSlabsAllocator(nuint piece, int[] order, nint near)
    {
        _piece = piece;
        _order = order;
        _live = new bool[order.Length];
        _reservedLength = piece * (nuint)(order.Length + 1);
        _reservation = mmap(near, _reservedLength, ProtRead | ProtWrite, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if (_reservation == -1)
        {
            throw new InvalidOperationException($"no reservation of {_reservedLength} bytes: errno {Marshal.GetLastPInvokeError()}");
        }

        _start = (nint)(((nuint)_reservation + piece - 1) & ~(piece - 1));
    }

    /// <summary>Where the pieces start (the reservation's first piece boundary).</summary>
    public nint Start => _start;

    /// <summary>Where the pieces end.</summary>
    public nint End => _start + (nint)(_piece * (nuint)_order.Length);

    public override string Name => "placed-slabs";

    public override bool SupportsAdvice => true;

    /// <summary>Pieces handed out and not unmapped.</summary>
    public int LiveCount
    {
        get
        {
            lock (_lock)
            {
                return Array.FindAll(_live, static live => live).Length;
            }
        }
    }

    /// <summary>How many pieces were handed out.</summary>
    public int HandedOut => Volatile.Read(ref _handedOut);

    /// <summary>Fails the test if a piece was unmapped twice, or an unmap named no piece.</summary>
    public void AssertNoMisuse() => Assert.True(_failure is null, _failure);

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        if (length != _piece || kind != PageKind.Normal || alignment > _piece || _piece % alignment != 0)
        {
            return _inner.TryMap(length, alignment, kind, out address);
        }

        lock (_lock)
        {
            if (_handedOut == _order.Length)
            {
                address = 0;
                return false;
            }

            int index = _order[_handedOut++];
            _live[index] = true;
            address = _start + (nint)(_piece * (nuint)index);
            return true;
        }
    }

    public override bool Unmap(nint address, nuint length)
    {
        if (!IsPiece(address))
        {
            return _inner.Unmap(address, length);
        }

        lock (_lock)
        {
            int index = (int)((nuint)(address - _start) / _piece);
            if (length != _piece || (nuint)(address - _start) % _piece != 0 || !_live[index])
            {
                _failure ??= $"unmapped 0x{address:x} ({length} bytes), which is no piece handed out and still mapped";
                return true;
            }

            _live[index] = false;
        }

        _ = madvise(address, length, MadvDontNeed);
        return true;
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice)
    {
        if (!IsPiece(address))
        {
            return _inner.TryAdvise(address, length, advice);
        }

        return advice != PageAdvice.DontNeed || madvise(address, length, MadvDontNeed) == 0;
    }

    public override bool TryProtect(nint address, nuint length, PageProtection protection) =>
        !IsPiece(address) && _inner.TryProtect(address, length, protection);

    public void Dispose() => _ = munmap(_reservation, _reservedLength);

    private bool IsPiece(nint address) => address >= _start && address < End;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(nint address, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(nint address, nuint length, int advice);
}
