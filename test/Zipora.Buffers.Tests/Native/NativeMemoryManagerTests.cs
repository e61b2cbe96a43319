using System;
using System.Buffers;
using System.Runtime.InteropServices;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

public sealed unsafe class NativeMemoryManagerTests
{
    [Fact]
    public void WrapsCallerMemoryAndExposesItAsSpanAndMemory()
    {
        byte* block = (byte*)NativeMemory.Alloc(64);
        try
        {
            using var manager = new NativeMemoryManager((nint)block, 64);
            manager.Memory.Span.Fill(9);
            Assert.Equal(9, block[63]);
            Assert.Equal(64, manager.GetSpan().Length);
            Assert.Equal((nint)block, manager.Address);
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }

    [Fact]
    public void PinAcceptsOffsetsUpToTheLengthAndRejectsOthers()
    {
        byte* block = (byte*)NativeMemory.Alloc(32);
        try
        {
            using var manager = new NativeMemoryManager((nint)block, 32);
            using (MemoryHandle start = manager.Pin())
            using (MemoryHandle end = manager.Pin(32))
            {
                Assert.Equal((nint)block, (nint)start.Pointer);
                Assert.Equal((nint)block + 32, (nint)end.Pointer);
            }

            Assert.Throws<ArgumentOutOfRangeException>(() => manager.Pin(33));
            Assert.Throws<ArgumentOutOfRangeException>(() => manager.Pin(-1));
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }

    [Fact]
    public void AfterDisposeEveryAccessThrowsObjectDisposed()
    {
        byte* block = (byte*)NativeMemory.Alloc(16);
        try
        {
            var manager = new NativeMemoryManager((nint)block, 16);
            Memory<byte> memory = manager.Memory;
            ((IDisposable)manager).Dispose();
            Assert.True(manager.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => manager.Memory);
            Assert.Throws<ObjectDisposedException>(() => manager.GetSpan());
            Assert.Throws<ObjectDisposedException>(() => memory.Span.Length);
            Assert.Throws<ObjectDisposedException>(() => manager.Pin());
            manager.Dispose();
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }

    [Fact]
    public void DisposeCallsTheReleaserExactlyOnce()
    {
        var releaser = new CountingReleaser();
        byte* block = stackalloc byte[8];
        var manager = new NativeMemoryManager((nint)block, 8, releaser);
        IMemoryOwner<byte> owner = manager;
        owner.Dispose();
        owner.Dispose();
        manager.Dispose();
        Assert.Equal(1, releaser.Calls);
        Assert.Same(manager, releaser.Last);
    }

    [Fact]
    public void InvalidArgumentsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new NativeMemoryManager(16, -1));
        Assert.Throws<ArgumentNullException>(() => new NativeMemoryManager(0, 16));
        using var empty = new NativeMemoryManager(0, 0);
        Assert.True(empty.Memory.IsEmpty);
    }

    private sealed class CountingReleaser : INativeMemoryReleaser
    {
        public int Calls { get; private set; }

        public NativeMemoryManager? Last { get; private set; }

        public void Release(NativeMemoryManager buffer)
        {
            Calls++;
            Last = buffer;
        }
    }
}
