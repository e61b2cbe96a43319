using System.Diagnostics.CodeAnalysis;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Skips the running test and names why on the console: the test adapter prints a skip's reason only at detailed
/// verbosity, but prints diagnostic messages (on in xunit.runner.json) at the default one.
/// </summary>
internal static class Skip
{
    [DoesNotReturn]
    public static void Because(string reason)
    {
        TestContext.Current.SendDiagnosticMessage($"{TestContext.Current.Test?.TestDisplayName} [SKIP] {reason}");
        Assert.Skip(reason);
    }

    public static void Unless([DoesNotReturnIf(false)] bool condition, string reason)
    {
        if (!condition)
        {
            Because(reason);
        }
    }

    public static void When([DoesNotReturnIf(true)] bool condition, string reason) => Unless(!condition, reason);
}
