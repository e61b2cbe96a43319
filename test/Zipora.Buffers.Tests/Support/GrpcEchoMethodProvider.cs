using System;
using Grpc.AspNetCore.Server.Model;

namespace Zipora.Buffers.Tests;

/// <summary>Binds <see cref="GrpcEchoService"/> to <see cref="GrpcEchoMethods"/> without generated code.</summary>
public sealed class GrpcEchoMethodProvider(GrpcEchoMethods methods) : IServiceMethodProvider<GrpcEchoService>
{
    /// <inheritdoc/>
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<GrpcEchoService> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.AddUnaryMethod(methods.Echo, [], static (service, request, call) => service.EchoAsync(request, call));
        context.AddDuplexStreamingMethod(methods.Chat, [], static (service, requests, responses, call) => service.ChatAsync(requests, responses, call));
    }
}
