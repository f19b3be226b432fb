using System.Buffers;
using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

public sealed class ReorderBufferTests
{
    // A payload whose received buffer (payload + CRC trailer) is exactly 1 MiB, and what holding it costs.
    private const int Seg = (1 << 20) - NetProtocol.CrcTrailerSize;
    private const long Charge = (1 << 20) + ReorderBuffer.SegmentOverheadBytes;

    private static async Task<NetFrame> FrameAsync(ulong seq, int length, byte fill)
    {
        var ms = new MemoryStream();
        byte[] payload = new byte[length];
        Array.Fill(payload, fill);
        await NetFrame.WriteAsync(ms, NetFrameType.Data, seq, payload, null, default);
        ms.Position = 0;
        return (await NetFrame.ReadAsync(ms, "test", null, default))!;
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
        int seg = Seg;
        var buffer = new ReorderBuffer(4 * Charge);
        for (ulong s = 1; s <= 4; s++)
            await buffer.AddAsync(await FrameAsync(s, seg, (byte)s), "c", default);
        var blocked = buffer.AddAsync(await FrameAsync(5, seg, 5), "c", default).AsTask();
        await Task.Delay(100);
        Assert.False(blocked.IsCompleted);
        Assert.Equal(4 * Charge, buffer.PeakQueuedBytes);
        await buffer.AddAsync(await FrameAsync(0, seg, 0), "c", default); // the next one is always admitted
        var sink = new byte[2 * seg];
        int n = 0;
        while (n < 2 * seg)
            n += await buffer.ReadAsync(sink.AsMemory(n), default);
        await blocked.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(buffer.PeakQueuedBytes <= 5 * Charge, "the cap plus one next-needed segment bounds what is held");
    }

    [Fact]
    public async Task PipeReader_HandsOutOutOfOrderSegmentsInOrder_WithoutCopying_AndEndsOnTheAnnouncedLength()
    {
        var buffer = new ReorderBuffer(NetProtocol.MaxFramePayload);
        var f0 = await FrameAsync(0, 3, 0);
        byte[] firstBuffer = f0.Buffer;
        await buffer.AddAsync(await FrameAsync(2, 3, 2), "c", default);
        await buffer.AddAsync(await FrameAsync(1, 3, 1), "c", default);
        await buffer.AddAsync(f0, "c", default);
        buffer.SetEnd(3, 9, "c");
        var reader = new ReorderPipeReader(buffer, authenticates: false);
        var result = await reader.ReadAsync();
        Assert.True(result.IsCompleted);
        Assert.Equal(new byte[] { 0, 0, 0, 1, 1, 1, 2, 2, 2 }, result.Buffer.ToArray());
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(result.Buffer.First, out var first));
        Assert.Same(firstBuffer, first.Array); // the socket read's buffer itself
        reader.AdvanceTo(result.Buffer.GetPosition(4), result.Buffer.End);
        result = await reader.ReadAsync();
        Assert.Equal(new byte[] { 1, 1, 2, 2, 2 }, result.Buffer.ToArray());
        reader.AdvanceTo(result.Buffer.End);
        result = await reader.ReadAsync();
        Assert.True(result.IsCompleted);
        Assert.True(result.Buffer.IsEmpty);
        await reader.CompleteAsync();
    }

    [Fact]
    public async Task PipeReader_ShortStream_IsEbadmsg()
    {
        var buffer = new ReorderBuffer(NetProtocol.MaxFramePayload);
        await buffer.AddAsync(await FrameAsync(0, 3, 0), "c", default);
        buffer.SetEnd(1, 4, "c");
        var reader = new ReorderPipeReader(buffer, authenticates: false);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await reader.ReadAsync());
        Assert.Equal(Errno.EBADMSG, e.Errno);
        await reader.CompleteAsync();
    }

    [Fact]
    public async Task PipeReader_HeldSegmentsCountAgainstTheCap_UntilConsumed()
    {
        int seg = Seg;
        var buffer = new ReorderBuffer(4 * Charge);
        var reader = new ReorderPipeReader(buffer, authenticates: false);
        await buffer.AddAsync(await FrameAsync(0, seg, 0), "c", default);
        var result = await reader.ReadAsync(); // holds segment 0 without consuming it
        Assert.Equal(seg, result.Buffer.Length);
        for (ulong s = 2; s <= 4; s++)
            await buffer.AddAsync(await FrameAsync(s, seg, (byte)s), "c", default);
        var blocked = buffer.AddAsync(await FrameAsync(5, seg, 5), "c", default).AsTask();
        await Task.Delay(100);
        Assert.False(blocked.IsCompleted); // 1 held + 3 queued = the cap
        reader.AdvanceTo(result.Buffer.End); // consumed: given back
        await blocked.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(buffer.PeakQueuedBytes <= 5 * Charge);
        var pending = reader.ReadAsync().AsTask();
        await Task.Delay(50);
        Assert.False(pending.IsCompleted); // segment 1 is missing
        await buffer.AddAsync(await FrameAsync(1, seg, 1), "c", default);
        result = await pending.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(5L * seg, result.Buffer.Length);
        Assert.Equal((byte)1, result.Buffer.FirstSpan[0]);
        reader.AdvanceTo(result.Buffer.End);
        buffer.Fault(new VfioException(Errno.ECANCELED, "test", "done"));
        await reader.CompleteAsync();
    }

    [Fact]
    public async Task Caps_CountSegments_AndWhatTheirBuffersOccupy_AndRefuseEmptySegments()
    {
        var buffer = new ReorderBuffer(NetProtocol.MaxFramePayload, capacitySegments: 3);
        for (ulong s = 1; s <= 3; s++)
            await buffer.AddAsync(await FrameAsync(s, 1, (byte)s), "c", default);
        var blocked = buffer.AddAsync(await FrameAsync(4, 1, 4), "c", default).AsTask();
        await Task.Delay(100);
        Assert.False(blocked.IsCompleted); // three 1-byte segments reach the segment cap
        Assert.Equal(3, buffer.QueuedSegments);
        Assert.True(buffer.PeakQueuedBytes >= 3L * ReorderBuffer.SegmentOverheadBytes, "a tiny segment still counts its bookkeeping");
        var e = await Assert.ThrowsAsync<VfioException>(async () => await buffer.AddAsync(await FrameAsync(9, 0, 0), "c", default));
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("empty", e.Message, StringComparison.Ordinal);
        buffer.Fault(new VfioException(Errno.ECANCELED, "test", "done"));
        await Assert.ThrowsAsync<VfioException>(() => blocked);
    }

    // A receiving channel makes room between a frame's header and its payload (docs/network.md §5), so the cap
    // bounds the segments the channels are still reading too.
    [Fact]
    public async Task Reserve_WaitsForRoomBeforeThePayloadIsRead_AndAlwaysAdmitsTheNextOne()
    {
        int buffer = Seg + NetProtocol.CrcTrailerSize; // what a receiver rents for it: exactly 1 MiB
        var reorder = new ReorderBuffer(4 * Charge);
        for (ulong s = 1; s <= 4; s++)
            await reorder.ReserveAsync(s, Seg, buffer, "c", default);
        Assert.Equal(4 * Charge, reorder.PeakQueuedBytes); // reserved room counts before any payload is read
        var blocked = reorder.ReserveAsync(5, Seg, buffer, "c", default).AsTask();
        await Task.Delay(100);
        Assert.False(blocked.IsCompleted);
        await reorder.ReserveAsync(0, Seg, buffer, "c", default); // the next one is always admitted
        Assert.Equal(5 * Charge, reorder.PeakQueuedBytes);
        foreach (ulong s in new ulong[] { 2, 0, 4, 1, 3 })
            reorder.AddReserved(await FrameAsync(s, Seg, (byte)s), "c");
        Assert.Equal(5 * Charge, reorder.PeakQueuedBytes); // a rented buffer of the size reserved adds nothing
        Assert.False(blocked.IsCompleted);
        var sink = new byte[2 * Seg];
        for (int n = 0; n < sink.Length;)
            n += await reorder.ReadAsync(sink.AsMemory(n), default); // segments 0 and 1 leave: room for 5
        await blocked.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(0, sink[0]);
        Assert.Equal(1, sink[^1]);
    }

    [Fact]
    public async Task Reserve_RefusesWhatAdd_Refuses_AndAnUnannouncedSegment()
    {
        var reorder = new ReorderBuffer(NetProtocol.MaxFramePayload);
        await reorder.ReserveAsync(1, 3, 7, "c", default);
        Assert.Equal(Errno.EBADMSG, (await Assert.ThrowsAsync<VfioException>(async () => await reorder.ReserveAsync(1, 3, 7, "c", default))).Errno);
        Assert.Equal(Errno.EBADMSG, (await Assert.ThrowsAsync<VfioException>(async () => await reorder.ReserveAsync(2, 0, 4, "c", default))).Errno);
        Assert.Equal(Errno.EBADMSG, (await Assert.ThrowsAsync<VfioException>(async () => await reorder.ReserveAsync(ReorderBuffer.MaxWindow + 1, 3, 7, "c", default))).Errno);
        var stray = await FrameAsync(5, 3, 5);
        Assert.Equal(Errno.EBADMSG, Assert.Throws<VfioException>(() => reorder.AddReserved(stray, "c")).Errno);
        Assert.Empty(stray.Buffer); // given back to the pool
        var e = Assert.Throws<VfioException>(() => reorder.SetEnd(1, 3, "c")); // segment 1 is on its way: the end cannot be before it
        Assert.Equal(Errno.EBADMSG, e.Errno);
    }
}
