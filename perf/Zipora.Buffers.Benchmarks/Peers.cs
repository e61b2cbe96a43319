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

    /// <summary>
    /// A fresh tiered pool that hands out each block's own owner again (<see cref="TieredMemoryPoolOptions.ReuseOwners"/>),
    /// the opt-in mode for callers that dispose every owner exactly once; otherwise the default options.
    /// </summary>
    public static TieredMemoryPool CreateTieredPoolReusingOwners() => new(new TieredMemoryPoolOptions { ReuseOwners = true });
}
