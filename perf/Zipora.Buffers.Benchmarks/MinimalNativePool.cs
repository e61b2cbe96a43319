using System;
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace Zipora.Buffers.Benchmarks;

/// <summary>
/// The floor experiment for the owner modes: the least a native-memory pool can do per rent, one size, one thread.
/// A thread-static stack of pre-made blocks (one thread-static read, no lock, no counter, no size classes, no trims;
/// the newest block in a slot of its own, so a steady rent and return reads no count before finding its block),
/// handing out each block's own manager again, or, with <c>safeOwners</c>, a fresh owner per rent disposed with one
/// atomic exchange, the least any design pays to make stale and racing disposes harmless. Not a pool anyone should
/// use: it never frees and serves only the size it was made for.
/// </summary>
public sealed unsafe class MinimalNativePool : MemoryPool<byte>
{
#pragma warning disable IDE1006 // The runtime's t_ prefix for thread-statics, which the s_ rule cannot tell apart.
    [ThreadStatic]
    private static Block? t_newest;

    [ThreadStatic]
    private static Block[]? t_stack;

    [ThreadStatic]
    private static int t_count;
#pragma warning restore IDE1006

    private readonly int _size;
    private readonly bool _safeOwners;

    public MinimalNativePool(int size, bool safeOwners)
    {
        _size = size;
        _safeOwners = safeOwners;
    }

    public override int MaxBufferSize => _size;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        Block block = Pop() ?? NewBlock();
        return _safeOwners ? new SafeOwner(block) : block;
    }

    protected override void Dispose(bool disposing)
    {
    }

    private Block NewBlock() => new((byte*)NativeMemory.AlignedAlloc((nuint)_size, 64), _size);

    // Pop and Push are not inlined: a pool called from a Pipe, a socket loop or Kestrel finds the thread's stack on
    // every rent and return. Inlined into the benchmark's loop, the JIT hoists the thread-static lookup out of it, and
    // the floor would measure less work than any real caller (or any pool's Rent and Dispose) pays.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Block? Pop()
    {
        Block? newest = t_newest;
        if (newest is not null)
        {
            t_newest = null;
            return newest;
        }

        Block[]? stack = t_stack;
        int top = t_count - 1;
        if (stack is not null && (uint)top < (uint)stack.Length)
        {
            t_count = top;
            return stack[top];
        }

        return null;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Push(Block block)
    {
        Block? newest = t_newest;
        t_newest = block;
        if (newest is not null)
        {
            Block[] stack = t_stack ??= new Block[256];
            if ((uint)t_count < (uint)stack.Length)
            {
                stack[t_count++] = newest;
            }
        }
    }

    private sealed class Block(byte* pointer, int length) : MemoryManager<byte>, IDisposable
    {
        public byte* Pointer => pointer;

        public int Length => length;

        public override Span<byte> GetSpan() => new(pointer, length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex, default, this);

        public override void Unpin()
        {
        }

        public void Dispose() => Push(this);

        protected override void Dispose(bool disposing) => Push(this);
    }

    private sealed class SafeOwner(Block block) : MemoryManager<byte>, IDisposable
    {
        private Block? _block = block;

        public override Span<byte> GetSpan()
        {
            Block held = _block ?? throw new ObjectDisposedException(nameof(SafeOwner));
            return new Span<byte>(held.Pointer, held.Length);
        }

        public override MemoryHandle Pin(int elementIndex = 0) => default;

        public override void Unpin()
        {
        }

        public void Dispose()
        {
            Block? held = Interlocked.Exchange(ref _block, null);
            if (held is not null)
            {
                Push(held);
            }
        }

        protected override void Dispose(bool disposing) => Dispose();
    }
}
