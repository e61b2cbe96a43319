using Grpc.Core;

namespace Zipora.Buffers.Tests;

/// <summary>The echo service's two methods, defined by hand (no protobuf) over one <see cref="GrpcPayloadMarshaller"/>.</summary>
public sealed class GrpcEchoMethods
{
    /// <summary>The request header whose value is the index of the message at which the server throws.</summary>
    public const string FailAtHeader = "x-fail-at";

    /// <summary>Creates the methods over <paramref name="marshaller"/>, whose counters then cover both ends.</summary>
    public GrpcEchoMethods(GrpcPayloadMarshaller marshaller)
    {
        Marshaller = marshaller;
        Echo = new Method<GrpcPayload, GrpcPayload>(MethodType.Unary, "zipora.Echo", "Echo", marshaller.Marshaller, marshaller.Marshaller);
        Chat = new Method<GrpcPayload, GrpcPayload>(MethodType.DuplexStreaming, "zipora.Echo", "Chat", marshaller.Marshaller, marshaller.Marshaller);
    }

    /// <summary>The marshaller both methods use.</summary>
    public GrpcPayloadMarshaller Marshaller { get; }

    /// <summary>One payload in, its answer out.</summary>
    public Method<GrpcPayload, GrpcPayload> Echo { get; }

    /// <summary>Answers every payload of the request stream as it comes.</summary>
    public Method<GrpcPayload, GrpcPayload> Chat { get; }
}
