namespace Zipora.Buffers.Tests;

/// <summary>
/// The whole public surface, called with hostile arguments: every exception is one its doc lists, every argument
/// exception names the parameter or option, and the pool each call ran against lost nothing.
/// </summary>
public sealed class PublicSurfaceTests(ITestOutputHelper output)
{
    [Fact]
    public void EveryPublicMemberThrowsOnlyWhatItsDocListsAndLosesNothing()
    {
        var fuzz = new SurfaceFuzz();
        fuzz.Run();

        output.WriteLine($"{fuzz.Calls} calls over {fuzz.MembersCalled.Count} members.");
        foreach (string finding in fuzz.Findings)
        {
            output.WriteLine(finding);
        }

        Assert.True(fuzz.Findings.Count == 0, string.Join('\n', fuzz.Findings));
    }
}
