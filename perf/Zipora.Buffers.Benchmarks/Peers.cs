using System.Buffers;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;

namespace Zipora.Buffers.Benchmarks;

/// <summary>The peers every benchmark measures against, created the way their users get them.</summary>
public static class Peers
{
    /// <summary>
    /// Kestrel's real default pool (the pinned-block pool), from a WebApplication that is built but never started,
    /// so its eviction timer stays off.
    /// </summary>
    public static MemoryPool<byte> CreateKestrelPool()
    {
        WebApplication app = WebApplication.CreateSlimBuilder().Build();
        return app.Services.GetRequiredService<IMemoryPoolFactory<byte>>().Create();
    }

    /// <summary>A fresh tiered pool with default options.</summary>
    public static TieredMemoryPool CreateTieredPool() => new();
}
