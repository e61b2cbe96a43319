using System;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Zipora.Buffers;

/// <summary>
/// Fails the options of <see cref="TieredMemoryPoolServiceCollectionExtensions.AddTieredMemoryPool"/> when the
/// <see cref="IMemoryPoolFactory{T}"/> registration it added is no longer the last one, which is the one Kestrel
/// resolves: <c>WebHost.UseKestrel()</c> or <c>UseKestrelCore()</c> called after it registers Kestrel's own factory again,
/// and Kestrel then ran on its own pool without a word, with none of the caps, idle release or statistics the
/// application configured here.
/// </summary>
/// <remarks>
/// Run by the host at start (the options are validated on start) and whenever the options are made, so before the
/// pool is built too. It reads the service collection, which is complete by then, and resolves nothing: resolving the
/// factory would build the pool, whose options are the ones being validated.
/// </remarks>
internal sealed class FactoryRegistrationCheck(IServiceCollection services) : IValidateOptions<TieredMemoryPoolOptions>
{
    /// <summary>The factory method of every registration <c>AddTieredMemoryPool</c> adds, by which the check knows its own.</summary>
    public static readonly Func<IServiceProvider, object> FactoryOfThePool = static provider => provider.GetRequiredService<TieredMemoryPoolFactory>();

    public ValidateOptionsResult Validate(string? name, TieredMemoryPoolOptions options)
    {
        if (name != Options.DefaultName)
        {
            // Named options are the application's own: the pool AddTieredMemoryPool builds reads the default ones.
            return ValidateOptionsResult.Skip;
        }

        ServiceDescriptor? last = null;
        foreach (ServiceDescriptor service in services)
        {
            if (service.ServiceType == typeof(IMemoryPoolFactory<byte>) && !service.IsKeyedService)
            {
                last = service;
            }
        }

        if (last?.ImplementationFactory == FactoryOfThePool)
        {
            return ValidateOptionsResult.Success;
        }

        string replacement = last is null ? "nothing (the registrations were removed)" : last.ImplementationType?.FullName
            ?? last.ImplementationInstance?.GetType().FullName
            ?? "a factory method";
        return ValidateOptionsResult.Fail(
            $"AddTieredMemoryPool registered the tiered pool as the IMemoryPoolFactory<byte> that Kestrel resolves, but a later registration replaces it ({replacement}), so Kestrel would rent from another pool. WebHost.UseKestrel() and UseKestrelCore() register Kestrel's own factory: call AddTieredMemoryPool after them (ConfigureKestrel does not register one). To run Kestrel on another pool and keep a TieredMemoryPool for other uses, register the TieredMemoryPool as a service yourself instead of calling AddTieredMemoryPool.");
    }
}
