namespace Zipora.Buffers.Tests;

/// <summary>The calls of a <see cref="Zipora.Buffers.Native.PageAllocator"/> a fault can be injected into.</summary>
public enum AllocatorCall
{
    Map,
    Unmap,
    Advise,
    Protect,
}
