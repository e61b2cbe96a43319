using System;
using System.Linq;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Zipora.Buffers;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Zipora.Buffers' tiered pool with dependency injection, and with it Kestrel's connection buffers.</summary>
public static class TieredMemoryPoolServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="TieredMemoryPoolOptions"/>, a singleton <see cref="TieredMemoryPool"/> built from them, and
    /// an <see cref="IMemoryPoolFactory{T}"/> whose pools rent from it. Kestrel resolves that factory for its socket
    /// transport, so after this call every connection buffer comes from the tiered pool (the last registration of
    /// the factory wins over Kestrel's own).
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">
    /// Adjusts the options, which start with <see cref="TieredMemoryPoolOptions.UsePinnedArrays"/> on because Kestrel's
    /// socket transport needs array-backed buffers: the only default this call sets, once, and ahead of every other
    /// configuration of the options, so a value the application sets (before or after this call, in code or bound
    /// from configuration) wins. Invalid values throw <see cref="ArgumentException"/> when the pool is first resolved
    /// (for Kestrel, as the server starts).
    /// </param>
    /// <remarks>
    /// Call it after <c>WebHost.UseKestrel()</c> or <c>UseKestrelCore()</c> if the application calls them: each registers
    /// Kestrel's own factory again, which would win. The options are validated as the host starts, and fail with
    /// <see cref="OptionsValidationException"/> saying so when a later registration replaced this one (also when the
    /// options are first made, outside a host).
    /// </remarks>
    /// <returns><paramref name="services"/>, for chaining.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">
    /// <paramref name="services"/> is read-only (a host's collection once the host is built); nothing was registered.
    /// </exception>
    public static IServiceCollection AddTieredMemoryPool(this IServiceCollection services, Action<TieredMemoryPoolOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        OptionsBuilder<TieredMemoryPoolOptions> options = services.AddOptions<TieredMemoryPoolOptions>();

        // Kestrel's socket transport sends multi-segment responses through SocketAsyncEventArgs.BufferList, which
        // takes arrays only: the pool behind Kestrel must hand out array-backed buffers, pinned so they never move.
        // A default, so first: options configured before this call, or by an earlier call, are applied after it.
        if (!services.Any(static service => service.ImplementationType == typeof(PinnedArraysByDefault)))
        {
            services.Insert(0, ServiceDescriptor.Singleton<IConfigureOptions<TieredMemoryPoolOptions>, PinnedArraysByDefault>());
        }

        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.TryAddSingleton(static provider => new TieredMemoryPool(provider.GetRequiredService<IOptions<TieredMemoryPoolOptions>>().Value));
        services.TryAddSingleton(static provider => new TieredMemoryPoolFactory(provider.GetRequiredService<TieredMemoryPool>()));

        // Added, not tried: Kestrel registers its own factory first, and the last registration is the one resolved. A
        // later UseKestrel() registers Kestrel's again: the check fails the host's start then, rather than let Kestrel
        // run on its own pool unseen.
        services.AddSingleton(typeof(IMemoryPoolFactory<byte>), FactoryRegistrationCheck.FactoryOfThePool);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TieredMemoryPoolOptions>>(new FactoryRegistrationCheck(services)));
        options.ValidateOnStart();
        return services;
    }
}
