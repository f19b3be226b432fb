using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Server;
using Vfio.TestSupport;

namespace Vfio.IntegrationTests;

/// <summary>The vfio-user client and server log their connection's life with their stable event ids.</summary>
public sealed class VfioUserLoggingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Client_logs_the_negotiation_and_a_lost_server_and_the_server_logs_the_client()
    {
        var serverLog = new RecordingLoggerFactory();
        var clientLog = new RecordingLoggerFactory();
        var device = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 16 });
        string path = TestSupport.TempSocketPath();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var server = new VfioUserServer(path, VfioUserDeviceDefinition.ForSample(device), new VfioUserServerOptions { LoggerFactory = serverLog });
        server.Start();
        var run = server.RunAsync(cts.Token);

        await using var client = await VfioUserClient.ConnectAsync(path, new VfioUserClientOptions { LoggerFactory = clientLog }, Ct);
        Assert.Contains(clientLog.Ids(), id => id == 250);
        Assert.Contains("max_data_xfer_size", clientLog.Text(250), StringComparison.Ordinal);

        // The server goes away: the client's reader sees the connection end and logs why (an exception object).
        await cts.CancelAsync();
        await server.DisposeAsync();
        try
        {
            await run.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        }
        catch (OperationCanceledException)
        {
        }
        Assert.True(await clientLog.WaitForAsync(251, TimeSpan.FromSeconds(20), Ct), "the client logged no lost connection (251)");
        Assert.NotNull(clientLog.Exception(251));
        Assert.Contains(serverLog.Ids(), id => id is 200 or 201);
    }
}
