using System;
using System.Globalization;
using System.Threading.Tasks;
using Grpc.Core;

namespace Zipora.Buffers.Tests;

/// <summary>The server side of <see cref="GrpcEchoMethods"/>: answers each payload, and throws where the call asks it to.</summary>
public sealed class GrpcEchoService
{
    /// <summary>Answers <paramref name="request"/>, or throws if the call carries <see cref="GrpcEchoMethods.FailAtHeader"/>.</summary>
    public Task<GrpcPayload> EchoAsync(GrpcPayload request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        return FailAt(context) is not null
            ? throw new InvalidOperationException("The echo service was asked to fail.")
            : Task.FromResult(request.Answer());
    }

    /// <summary>Answers every payload of <paramref name="requests"/>, throwing at the index the call's header names.</summary>
    public async Task ChatAsync(IAsyncStreamReader<GrpcPayload> requests, IServerStreamWriter<GrpcPayload> responses, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(responses);
        ArgumentNullException.ThrowIfNull(context);
        int? failAt = FailAt(context);
        for (int index = 0; await requests.MoveNext(context.CancellationToken); index++)
        {
            if (index == failAt)
            {
                throw new InvalidOperationException($"The echo service was asked to fail at message {index}.");
            }

            await responses.WriteAsync(requests.Current.Answer(), context.CancellationToken);
        }
    }

    private static int? FailAt(ServerCallContext context) =>
        context.RequestHeaders.GetValue(GrpcEchoMethods.FailAtHeader) is { } value ? int.Parse(value, CultureInfo.InvariantCulture) : null;
}
