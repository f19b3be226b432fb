using System.Globalization;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// Every vfio-user socket asks for buffers that hold whole data messages (VfioUserTuning.SocketBufferBytes). Linux
/// caps a SO_SNDBUF/SO_RCVBUF request at net.core.wmem_max/rmem_max and reports twice the value it keeps.
/// </summary>
public sealed class SocketBufferTests
{
    [Fact]
    public void A_vfio_user_socket_gets_the_buffers_the_kernel_allows_and_never_smaller_ones()
    {
        var (probeA, probeB) = UnixFdSocket.CreateSocketPair();
        int defaultSend = probeA.SendBufferSize, defaultReceive = probeA.ReceiveBufferSize;
        probeA.Dispose();
        probeB.Dispose();
        long wmemMax = ReadSysctl("/proc/sys/net/core/wmem_max"), rmemMax = ReadSysctl("/proc/sys/net/core/rmem_max");

        var (a, b) = UnixFdSocket.CreateSocketPair();
        using var socket = new UnixFdSocket(a);
        using var peer = b;
        Assert.Equal(Math.Max(defaultSend, 2 * Math.Min(VfioUserTuning.SocketBufferBytes, wmemMax)), a.SendBufferSize);
        Assert.Equal(Math.Max(defaultReceive, 2 * Math.Min(VfioUserTuning.SocketBufferBytes, rmemMax)), a.ReceiveBufferSize);

        // Never shrinks a buffer someone made larger (as far as the cap allows).
        var (c, d) = UnixFdSocket.CreateSocketPair();
        using var peer2 = d;
        c.SendBufferSize = (int)Math.Min(int.MaxValue / 2, wmemMax);
        int before = c.SendBufferSize;
        using var socket2 = new UnixFdSocket(c);
        Assert.Equal(before, c.SendBufferSize);
    }

    [Fact]
    public async Task A_client_connected_by_path_reports_the_buffers_it_got()
    {
        var ct = TestContext.Current.CancellationToken;
        var (probeA, probeB) = UnixFdSocket.CreateSocketPair();
        int defaultSend = probeA.SendBufferSize;
        probeA.Dispose();
        probeB.Dispose();
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, ct);
        long wmemMax = ReadSysctl("/proc/sys/net/core/wmem_max");
        Assert.Equal(Math.Max(defaultSend, 2 * Math.Min(VfioUserTuning.SocketBufferBytes, wmemMax)), client.SocketBuffers.Send);
    }

    private static long ReadSysctl(string path) => long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);
}
