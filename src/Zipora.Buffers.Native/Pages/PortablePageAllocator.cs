using System;
using System.Runtime.InteropServices;

namespace Zipora.Buffers.Native;

/// <summary>Pages from the C heap (<see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/>): works everywhere, hints do nothing.</summary>
internal sealed unsafe class PortablePageAllocator : PageAllocator
{
    public override string Name => "portable";

    protected override bool TryMapCore(nuint length, nuint alignment, PageKind kind, out nint address)
    {
        address = 0;
        if (kind != PageKind.Normal)
        {
            return false;
        }

        void* block;
        try
        {
            block = NativeMemory.AlignedAlloc(length, alignment);
        }
        catch (OutOfMemoryException)
        {
            // AlignedAlloc reports a null from the C runtime this way; the contract here is a false return.
            return false;
        }

        address = (nint)block;
        return true;
    }

    public override bool Unmap(nint address, nuint length)
    {
        NativeMemory.AlignedFree((void*)address);
        return true;
    }

    public override bool TryAdvise(nint address, nuint length, PageAdvice advice) => false;

    public override bool TryProtect(nint address, nuint length, PageProtection protection) => false;
}
