using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

public sealed class ReorderBufferTests
{
    private static async Task<NetFrame> FrameAsync(ulong seq, int length, byte fill)
    {
        var ms = new MemoryStream();
        byte[] payload = new byte[length];
        Array.Fill(payload, fill);
        await NetFrame.WriteAsync(ms, NetFrameType.Data, seq, payload, default);
        ms.Position = 0;
        return (await NetFrame.ReadAsync(ms, "test", default))!;
    }

    [Fact]
    public async Task OutOfOrderSegments_AreReadInOrder()
    {
        var buffer = new ReorderBuffer(NetProtocol.MaxFramePayload);
        await buffer.AddAsync(await FrameAsync(2, 3, 2), "c", default);
        await buffer.AddAsync(await FrameAsync(0, 3, 0), "c", default);
        await buffer.AddAsync(await FrameAsync(1, 3, 1), "c", default);
        buffer.SetEnd(3, 9, "c");
        var out9 = new byte[9];
        int got = 0;
        while (got < 9)
            got += await buffer.ReadAsync(out9.AsMemory(got), default);
        Assert.Equal(new byte[] { 0, 0, 0, 1, 1, 1, 2, 2, 2 }, out9);
        Assert.Equal(0, await buffer.ReadAsync(new byte[1], default));
    }

    [Fact]
    public async Task DuplicateSegment_IsEbadmsg()
    {
        var buffer = new ReorderBuffer(NetProtocol.MaxFramePayload);
        await buffer.AddAsync(await FrameAsync(1, 3, 1), "c", default);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await buffer.AddAsync(await FrameAsync(1, 3, 1), "c", default));
        Assert.Equal(Errno.EBADMSG, e.Errno);
    }

    [Fact]
    public async Task Cap_BlocksOutOfOrderSegmentsUntilTheReaderCatchesUp_ButAlwaysAdmitsTheNextOne()
    {
        int seg = 1 << 20;
        var buffer = new ReorderBuffer(4L << 20);
        for (ulong s = 1; s <= 4; s++)
            await buffer.AddAsync(await FrameAsync(s, seg, (byte)s), "c", default);
        var blocked = buffer.AddAsync(await FrameAsync(5, seg, 5), "c", default).AsTask();
        await Task.Delay(100);
        Assert.False(blocked.IsCompleted);
        Assert.Equal(4L << 20, buffer.PeakQueuedBytes);
        await buffer.AddAsync(await FrameAsync(0, seg, 0), "c", default); // the next one is always admitted
        var sink = new byte[2 * seg];
        int n = 0;
        while (n < 2 * seg)
            n += await buffer.ReadAsync(sink.AsMemory(n), default);
        await blocked.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(buffer.PeakQueuedBytes <= (5L << 20), "the cap plus one next-needed segment bounds what is held");
    }
}
