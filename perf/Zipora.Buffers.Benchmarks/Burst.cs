namespace Zipora.Buffers.Benchmarks;

/// <summary>A burst: how many buffers are held at once, of what size.</summary>
public readonly record struct Burst(int Count, int Size)
{
    public override string ToString() => Size switch
    {
        >= 1048576 => $"{Count}x{Size / 1048576}MB",
        >= 1024 => $"{Count}x{Size / 1024}KB",
        _ => $"{Count}x{Size}B",
    };
}
