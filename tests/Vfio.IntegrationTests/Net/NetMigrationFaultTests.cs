using System.Net;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// The engine over a real loopback session with a fault proxy in between, cut / corrupted / stalled at many
/// points of the sender→receiver bytes (handshake, setup, pre-copy, stop-copy). Whatever the point, the source
/// ends RUNNING with its state unchanged and both sides report an error (or, past the point of no return,
/// both report success).
/// </summary>
public sealed class NetMigrationFaultTests(ITestOutputHelper log)
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(ProxyFault.Cut, 0, 40)]            // in the hello
    [InlineData(ProxyFault.Cut, 0, 150)]           // just after the handshake
    [InlineData(ProxyFault.Cut, 0, 3_000_000)]     // pre-copy, control channel
    [InlineData(ProxyFault.Cut, 1, 3_000_000)]     // pre-copy, data channel
    [InlineData(ProxyFault.Cut, 1, 7_000_000)]     // late in the stream (channel 1 carries about 8.4 MB)
    [InlineData(ProxyFault.Corrupt, 0, 1_000_000)]
    [InlineData(ProxyFault.Corrupt, 1, 6_000_000)]
    [InlineData(ProxyFault.Stall, 1, 5_000_000)]
    public async Task FaultAnywhere_SourceRunsUnchanged_BothSidesFail(ProxyFault fault, int connection, long offset)
    {
        var security = new NetSecurityOptions { Token = NetToken.New(), IdleTimeout = TimeSpan.FromSeconds(1.5), HandshakeTimeout = TimeSpan.FromSeconds(3) };
        var options = new SampleDeviceOptions { SizeBytes = 16 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy | VfioMigrationFlags.P2P };
        using var sourceDevice = new SampleDevice(options with { Seed = 1 });
        using var destinationDevice = new SampleDevice(options with { Seed = 2 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        byte[] before = sourceDevice.ComputeSha256();

        await using var listener = NetListener.Bind("127.0.0.1", 0);
        await using var proxy = new FaultProxy(listener.LocalEndPoint, fault, connection, offset);
        var receiveSide = Task.Run(async () =>
        {
            // A cut inside the handshake drops that connection and the receiver waits for another sender: bound it.
            await using var session = await listener.AcceptSessionAsync(security, null, new NetAcceptOptions { AcceptTimeout = TimeSpan.FromSeconds(5) });
            return await NetMigration.ReceiveAsync(session, [destination], MigrationOptions.Default, _ => ValueTask.FromResult(new NetDigest(destinationDevice.ComputeSha256(), "bar0", "")));
        });
        var sendSide = Task.Run(async () =>
        {
            await using var session = await NetSenderSession.ConnectAsync("127.0.0.1", proxy.Port, 2, security);
            return await NetMigration.SendAsync(session, [source], MigrationOptions.Default, _ => ValueTask.FromResult(new NetDigest(sourceDevice.ComputeSha256(), "bar0", "")));
        });

        Exception? sendError = await Record(sendSide);
        Exception? receiveError = await Record(receiveSide);
        log.WriteLine($"{fault} on connection {connection} at byte {offset} (triggered: {proxy.Triggered})");
        log.WriteLine("sender:   " + (sendError?.Message ?? "ok"));
        log.WriteLine("receiver: " + (receiveError?.Message ?? "ok"));

        Assert.True(proxy.Triggered, "the fault point lies inside the transfer");
        Assert.NotNull(sendError);
        Assert.NotNull(receiveError);
        Assert.Equal(VfioMigrationState.Running, await source.GetStateAsync());
        Assert.Equal(before, sourceDevice.ComputeSha256());
        Assert.NotEqual(VfioMigrationState.Resuming, await destination.GetStateAsync());
    }

    private static async Task<Exception?> Record<T>(Task<T> task)
    {
        try
        {
            await task.WaitAsync(s_limit);
            return null;
        }
        catch (Exception e) when (e is VfioException or MigrationException or OperationCanceledException or IOException)
        {
            return e;
        }
    }
}
