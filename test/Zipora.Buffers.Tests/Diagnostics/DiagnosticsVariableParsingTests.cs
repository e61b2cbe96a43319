using System;
using System.Buffers;

namespace Zipora.Buffers.Tests;

/// <summary>
/// README, Diagnostic mode: <c>ZIPORA_BUFFERS_DIAGNOSTICS=sampled</c> (or <c>all</c>, or <c>off</c>) wins over the
/// option; "a value of the environment variable other than those three (and 0, 1, 2) is ignored, and the option
/// applies". <see cref="DiagnosticModeTests"/> sets only the three words, and only checks whether the owner is a
/// diagnostic one: an unknown value read as <c>off</c> (an operator's typo silently turning off the diagnostics they
/// configured in code), the digits dropped, or <c>sampled</c> read as <c>all</c> (65-110 µs a rent instead of 0.7)
/// all passed it.
/// </summary>
/// <remarks>
/// The table is read through <see cref="PoolDiagnostics.ParseLevel"/>, as the pool reads the variable: setting a
/// meaningful value would turn diagnostics on or off for every pool other tests make meanwhile. An unknown value
/// changes nothing when the promise holds, so that case goes through a real pool.
/// </remarks>
[Collection(nameof(HugepageTests))]
public sealed class DiagnosticsVariableParsingTests
{
    [Theory]
    [InlineData("off", DiagnosticLevel.Off)]
    [InlineData("0", DiagnosticLevel.Off)]
    [InlineData("sampled", DiagnosticLevel.Sampled)]
    [InlineData(" Sampled ", DiagnosticLevel.Sampled)]
    [InlineData("1", DiagnosticLevel.Sampled)]
    [InlineData("all", DiagnosticLevel.All)]
    [InlineData("ALL", DiagnosticLevel.All)]
    [InlineData("2", DiagnosticLevel.All)]
    public void EachWordAndDigitNamesItsLevel(string value, DiagnosticLevel expected) =>
        Assert.Equal(expected, PoolDiagnostics.ParseLevel(value));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("yes")]
    [InlineData("3")]
    [InlineData("-1")]
    [InlineData("of")]
    public void AnythingElseLeavesTheChoiceToTheOption(string? value) => Assert.Null(PoolDiagnostics.ParseLevel(value));

    [Theory]
    [InlineData(DiagnosticLevel.All, true)]
    [InlineData(DiagnosticLevel.Off, false)]
    public void APoolMadeUnderAnUnknownValueFollowsItsOption(DiagnosticLevel option, bool diagnostic)
    {
        Environment.SetEnvironmentVariable(PoolDiagnostics.EnvironmentVariable, "verbose");
        try
        {
            using var pool = new TieredMemoryPool(new TieredMemoryPoolOptions { Diagnostics = option });
            using IMemoryOwner<byte> owner = pool.Rent(4096);
            Assert.Equal(diagnostic, owner is DiagnosticOwner);
        }
        finally
        {
            Environment.SetEnvironmentVariable(PoolDiagnostics.EnvironmentVariable, null);
        }
    }
}
