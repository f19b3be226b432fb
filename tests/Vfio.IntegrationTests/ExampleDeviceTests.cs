namespace Vfio.IntegrationTests;

/// <summary>The device of examples/MinimalDevice (docs/device-authors.md) migrates and arrives intact.</summary>
public sealed class ExampleDeviceTests
{
    [Fact]
    public async Task The_minimal_example_device_migrates_and_verifies()
    {
        var output = new StringWriter();
        int exit = await MinimalDevice.Example.RunAsync(output, TestContext.Current.CancellationToken);
        Assert.True(exit == 0, output.ToString());
        Assert.Contains("verified: destination registers match the source (r0 = 0xc0de0000)", output.ToString(), StringComparison.Ordinal);
    }
}
