using System.Diagnostics;
using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// docs/security.md, "memory bounded by what arrives": an authenticated but hostile sender floods the receiver with
/// small out-of-order segments; what the receiver holds stays under its segment and byte caps, so memory is bounded.
/// Empty data segments and empty return frames are protocol errors.
/// </summary>
public sealed class ReorderFloodTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    private static NetSecurityOptions Security(NetToken token) => new() { Token = token, IdleTimeout = TimeSpan.FromSeconds(30), HandshakeTimeout = TimeSpan.FromSeconds(10) };

    private static async Task<(NetSenderSession, NetReceiverSession, NetListener)> PairAsync(int channels, NetSessionOptions options)
    {
        var token = NetToken.New();
        var listener = NetListener.Bind("127.0.0.1", 0);
        var accept = listener.AcceptSessionAsync(Security(token), options);
        var sender = await NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, channels, Security(token)).WaitAsync(s_limit);
        return (sender, await accept.WaitAsync(s_limit), listener);
    }

    [Fact]
    public async Task FloodOfSmallOutOfOrderSegments_HeldSegmentsAndMemoryStayBounded()
    {
        const int frames = 100_000, segmentCap = 512;
        var options = new NetSessionOptions { MaxQueuedBytes = 4 << 20, MaxQueuedSegments = segmentCap };
        var (sender, receiver, listener) = await PairAsync(2, options);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long managedBefore = GC.GetTotalMemory(forceFullCollection: true);
        long rssBefore = Process.GetCurrentProcess().WorkingSet64;

        // Segment 0 never comes, so every one of these waits out of order. A write that cannot finish within 3 s
        // means the receiver stopped reading (backpressure): the flood is over.
        var channel = sender.ChannelAt(1);
        byte[] one = [0x42];
        int sent = 0;
        for (ulong seq = 1; seq <= frames; seq++)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            try
            {
                await channel.WriteFrameAsync(NetFrameType.Data, seq, one, cts.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (VfioException e) when (e.Errno == Errno.ECANCELED)
            {
                break;
            }
            sent++;
        }
        // Let the receiver take in what is in flight (bounded wait: until its queue stops growing).
        int held = -1;
        for (int i = 0; i < 50 && held != receiver.Reassembly.QueuedSegments; i++)
        {
            held = receiver.Reassembly.QueuedSegments;
            await Task.Delay(100);
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long managedGrowth = GC.GetTotalMemory(forceFullCollection: true) - managedBefore;
        long rssGrowth = Process.GetCurrentProcess().WorkingSet64 - rssBefore;

        Assert.True(sent > segmentCap, $"the flood must exceed the cap to test it (sent {sent})");
        Assert.InRange(receiver.Reassembly.QueuedSegments, 1, segmentCap);
        Assert.InRange(receiver.Reassembly.PeakQueuedBytes, 1, options.MaxQueuedBytes);
        Assert.False(receiver.IsFaulted);
        // Bounded, not timed: a receiver that held every segment would grow with the flood, not stay under these.
        Assert.True(managedGrowth < 64L << 20, $"managed heap grew by {managedGrowth} bytes");
        Assert.True(rssGrowth < 256L << 20, $"RSS grew by {rssGrowth} bytes");
    }

    [Fact]
    public async Task EmptyDataSegment_IsAProtocolError()
    {
        var (sender, receiver, listener) = await PairAsync(2, NetSessionOptions.Default);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        await sender.ChannelAt(1).WriteFrameAsync(NetFrameType.Data, 1, ReadOnlyMemory<byte>.Empty, default);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await receiver.MigrationStream.ReadAsync(new byte[16]).AsTask().WaitAsync(s_limit));
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("empty", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EmptyReturnFrame_IsAProtocolError_NotTheEndOfTheReturnPath()
    {
        var (sender, receiver, listener) = await PairAsync(1, NetSessionOptions.Default);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        await receiver.ChannelAt(0).WriteFrameAsync(NetFrameType.Return, 0, ReadOnlyMemory<byte>.Empty, default);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await sender.ReturnStream.ReadAsync(new byte[16]).AsTask().WaitAsync(s_limit));
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("empty return-path frame", e.Message, StringComparison.Ordinal);
    }
}
