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

    /// <summary>A clock the idle release can read: one whose timestamps convert to time (a positive frequency).</summary>
    public static void RequireClock(TimeProvider? time, string owner, string name)
    {
        if (time is null)
        {
            throw new ArgumentNullException(name, $"{owner}.{name} must not be null.");
        }

        // Accepted, a clock whose timestamps convert to no time would fail every tick in the background, for good.
        long frequency = time.TimestampFrequency;
        if (frequency <= 0)
        {
            throw Invalid(owner, name, $"must count time: its TimestampFrequency must be positive, but is {frequency}.");
        }
    }

    public static ArgumentException Invalid(string owner, string name, string problem) =>
        new($"{owner}.{name} {problem}", name);
}
