using Microsoft.Extensions.Options;

namespace Zipora.Buffers;

/// <summary>
/// The default <see cref="Microsoft.Extensions.DependencyInjection.TieredMemoryPoolServiceCollectionExtensions.AddTieredMemoryPool"/>
/// gives the options: array-backed buffers, which Kestrel's socket transport needs. Registered once, ahead of every
/// other configuration of the options, so whatever the application configures (before or after, by code or by binding)
/// is applied over it.
/// </summary>
internal sealed class PinnedArraysByDefault : IConfigureOptions<TieredMemoryPoolOptions>
{
    public void Configure(TieredMemoryPoolOptions options) => options.UsePinnedArrays = true;
}
