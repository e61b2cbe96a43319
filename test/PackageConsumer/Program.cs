using System;
using System.Buffers;
using Microsoft.Extensions.DependencyInjection;
using Zipora.Buffers;
using Zipora.Buffers.Native;

// Uses both packages the way an application would, and fails loudly if anything is missing.
using (IMemoryOwner<byte> owner = TieredMemoryPool.Shared.Rent(20_000))
{
    owner.Memory.Span.Fill(1);
}

var services = new ServiceCollection();
services.AddTieredMemoryPool();
Console.WriteLine($"packages work: {HugePageInfo.Read().TransparentMode}, {TieredMemoryPool.Shared.GetStatistics().Large.Rents} large rent, {services.Count} services");
