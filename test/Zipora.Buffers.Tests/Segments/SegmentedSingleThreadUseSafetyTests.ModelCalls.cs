using System;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>The model test's calls and their outcomes, and a destination that calls back into its source.</summary>
public sealed partial class SegmentedSingleThreadUseSafetyTests
{
    private static (object? Result, Type? Error) Run(Stream s, int op, int n, long where, SeekOrigin origin, byte[] data)
    {
        try
        {
            switch (op)
            {
                case 0:
                    s.Write(data);
                    return (null, null);
                case 1:
                    s.WriteByte(7);
                    return (null, null);
                case 2:
                    byte[] buffer = new byte[n];
                    int read = s.Read(buffer);
                    return (Convert.ToBase64String(buffer, 0, read), null);
                case 3:
                    return (s.ReadByte(), null);
                case 4:
                    return (s.Seek(where - 60, origin), null);
                case 5:
                    s.Position = where;
                    return (null, null);
                case 6:
                    s.SetLength(where);
                    return (null, null);
                case 7:
                    using (var copy = new MemoryStream())
                    {
                        s.CopyTo(copy);
                        return (Convert.ToBase64String(copy.ToArray()), null);
                    }

                case 8:
                    return (Convert.ToBase64String(s is MemoryStream m ? m.ToArray() : ((SegmentedMemoryStream)s).ToArray()), null);
                case 9:
                    return (s.Length, null);
                default:
                    s.WriteAsync(data).AsTask().GetAwaiter().GetResult();
                    return (null, null);
            }
        }
        catch (Exception error)
        {
            return (null, error.GetType());
        }
    }

    private static bool Equal((object? Result, Type? Error) a, (object? Result, Type? Error) b) =>
        a.Error == b.Error && Equals(a.Result, b.Result);

    private static string Show((object? Result, Type? Error) outcome) =>
        outcome.Error is not null ? $"throws {outcome.Error.Name}" : $"returns {outcome.Result ?? "(void)"}";

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers.
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>A write-only stream that runs a callback on each write (on the writing thread).</summary>
    internal sealed class CallbackStream(Action<ReadOnlyMemory<byte>> onWrite) : Stream
    {
        public MemoryStream Received { get; } = new();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            Received.Write(buffer);
            onWrite(buffer.ToArray());
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
