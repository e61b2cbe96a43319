using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The floor experiment for <see cref="TieredMemoryPoolOptions.ReuseOwners"/> with the promises that mode keeps on its
/// fast path and <see cref="MinimalNativePool"/> does not: a stale second dispose is refused (the block's state), a
/// trim may take a live thread's blocks (a flag the thread raises around its stack and a flag the trim closes the
/// stacks with), and a process holds more than one pool (the thread's stack names its pool). One size, one thread-static
/// stack with its newest block in a slot of its own, no size classes, no statistics, nothing given back. Not a pool
/// anyone should use: there is no trim, only what a trim would cost the fast path. With <c>ownerPerRent</c> it is the
/// floor of the tiered pool's default mode instead: the same, plus a fresh owner per rent disposed with one atomic
/// exchange, which is what makes a stale or racing dispose harmless after the block was rented again, made before the
/// block is taken, so a rent that runs out of managed memory for it takes nothing.
/// </summary>
public sealed unsafe class MinimalSafeNativePool : MemoryPool<byte>
{
#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    [ThreadStatic]
    private static Stack? t_stack;
#pragma warning restore IDE1006

    private static long s_lastId;

    private readonly int _size;
    private readonly long _id = Interlocked.Increment(ref s_lastId);

    // What a trim would set while it empties the threads' stacks; never set here, only read as a pool must.
#pragma warning disable CS0649
    private volatile bool _stacksClosed;
#pragma warning restore CS0649

    private readonly bool _ownerPerRent;

    public MinimalSafeNativePool(int size, bool ownerPerRent = false)
    {
        _size = size;
        _ownerPerRent = ownerPerRent;
    }

    public override int MaxBufferSize => _size;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        // The owner first, as the tiered pool makes it: out of managed memory for it, the rent has taken no block.
        Owner? owner = _ownerPerRent ? new Owner() : null;
        Block block = Pop() ?? new Block((byte*)NativeMemory.AlignedAlloc((nuint)_size, 64), _size, this);
        block.Live = true;
        return owner is null ? block : owner.Hold(block);
    }

    protected override void Dispose(bool disposing)
    {
    }

    // Not inlined, as MinimalNativePool's: every caller finds the thread's stack on every rent and return.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private Block? Pop()
    {
        Stack? stack = t_stack;
        if (stack is null || stack.PoolId != _id)
        {
            return null;
        }

        Volatile.Write(ref stack.InUse, 1);
        Block? newest = _stacksClosed ? null : stack.Newest;
        if (newest is not null)
        {
            stack.Newest = null;
        }
        else if (!_stacksClosed && stack.Count > 0)
        {
            newest = stack.Items[--stack.Count];
        }

        Volatile.Write(ref stack.InUse, 0);
        return newest;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Push(Block block)
    {
        Stack stack = t_stack ??= new Stack(_id);
        if (stack.PoolId != _id)
        {
            return; // Another pool's thread stack: a real pool goes to its shared depot here.
        }

        Volatile.Write(ref stack.InUse, 1);
        if (!_stacksClosed)
        {
            Block? newest = stack.Newest;
            stack.Newest = block;
            if (newest is not null && stack.Count < stack.Items.Length)
            {
                stack.Items[stack.Count++] = newest;
            }
        }

        Volatile.Write(ref stack.InUse, 0);
    }

    private sealed class Stack(long poolId)
    {
        public readonly long PoolId = poolId;
        public readonly Block[] Items = new Block[256];
        public Block? Newest;
        public int Count;
        public int InUse;
    }

    private sealed class Block(byte* pointer, int length, MinimalSafeNativePool pool) : MemoryManager<byte>, IDisposable
    {
        public bool Live;

        public override Span<byte> GetSpan() => Live ? new(pointer, length) : throw new ObjectDisposedException(nameof(Block));

        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex, default, this);

        public override void Unpin()
        {
        }

        public void Dispose()
        {
            if (Live)
            {
                Live = false;
                pool.Push(this);
            }
        }

        protected override void Dispose(bool disposing) => Dispose();
    }

    private sealed class Owner : MemoryManager<byte>, IDisposable
    {
        private Block? _block;

        public Owner Hold(Block block)
        {
            _block = block;
            return this;
        }

        public override Span<byte> GetSpan() => (_block ?? throw new ObjectDisposedException(nameof(Owner))).GetSpan();

        public override MemoryHandle Pin(int elementIndex = 0) => default;

        public override void Unpin()
        {
        }

        public void Dispose() => Interlocked.Exchange(ref _block, null)?.Dispose();

        protected override void Dispose(bool disposing) => Dispose();
    }
}
