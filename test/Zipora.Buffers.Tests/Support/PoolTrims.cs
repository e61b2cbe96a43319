namespace Zipora.Buffers.Tests;

/// <summary>The two trims a pool gets from outside: a caller's <c>Trim()</c>, and the pressure watch's.</summary>
internal static class PoolTrims
{
    /// <summary>Runs the pressure watch's trim when <paramref name="underPressure"/>, else <c>Trim()</c>.</summary>
    public static void Run(IReclaimablePool pool, bool underPressure)
    {
        if (underPressure)
        {
            pool.TrimUnderPressure();
        }
        else
        {
            pool.Trim();
        }
    }
}
