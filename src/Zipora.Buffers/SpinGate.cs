using System.Runtime.CompilerServices;
using System.Threading;

namespace Zipora.Buffers;

/// <summary>
/// A test-and-set lock for the short, syscall-free critical sections of the pool: one interlocked instruction to
/// enter and a plain release store to leave, half the atomic work of <see cref="Lock"/>, which matters on paths that
/// run once per rent. Contended entries spin, then yield, but never sleep: a holder is inside a few dozen
/// instructions, and a millisecond's sleep (<see cref="SpinWait"/>'s default after 20 spins) would stall a Pipe
/// whose reader and writer contend on two cores for as long as the holder needs a thousand times over.
/// </summary>
/// <remarks>A mutable struct: keep it in a non-readonly field and call it through that field, never a copy.</remarks>
internal struct SpinGate
{
    private int _taken;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _taken, 1, 0) != 0)
        {
            EnterContended();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit() => Volatile.Write(ref _taken, 0);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended()
    {
        var spinner = new SpinWait();
        while (Volatile.Read(ref _taken) != 0 || Interlocked.CompareExchange(ref _taken, 1, 0) != 0)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
    }
}
