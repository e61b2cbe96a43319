using System;

namespace Zipora.Buffers;

/// <summary>The checks both options classes make, with messages that name the class and the option.</summary>
internal static class OptionChecks
{
    public static void RequireNotNegative(long value, string owner, string name)
    {
        if (value < 0)
        {
            throw Invalid(owner, name, $"must not be negative, but is {value}.");
        }
    }

    public static ArgumentException Invalid(string owner, string name, string problem) =>
        new($"{owner}.{name} {problem}", name);
}
