using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Tests.Stream;

/// <summary>
/// docs/stream-format.md, flags: a data frame on the engine's in-process pipe may carry its payload beside the stream
/// as a chunk (flag 0x02): the frame is its header and a zero trailer, the chunk waits in the pipe's queue in frame
/// order, and no other transport's reader accepts the flag.
/// </summary>
public sealed class ChunkFrameTests
{
    private const ushort Devices = 2;
    private const uint MaxPayload = 1 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // A chunk whose bytes are in memory: what the engine sees of a kernel-held one.
    private sealed class MemoryChunk(byte[] bytes) : DataChunk
    {
        public bool Disposed { get; private set; }

        public bool CopiedOut { get; private set; }

        public override int Length => bytes.Length;

        public override ValueTask CopyToAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            bytes.CopyTo(destination);
            CopiedOut = true;
            return ValueTask.CompletedTask;
        }

        public override void Dispose() => Disposed = true;
    }

    private static byte[] Bytes(int length, byte seed)
    {
        var b = new byte[length];
        for (int i = 0; i < b.Length; i++)
            b[i] = (byte)(seed + i);
        return b;
    }

    [Fact]
    public async Task Chunk_frames_keep_their_order_among_ordinary_frames_and_count_their_payload()
    {
        var (writer, reader) = ProcessLocalPipe.Create(new PipeOptions(useSynchronizationContext: false));
        var streamWriter = new MigrationStreamWriter(writer, MigrationStreamKind.Forward, Devices, MaxPayload);
        Assert.True(streamWriter.CarriesChunks);
        await streamWriter.WritePreambleAsync(Ct);
        var first = new MemoryChunk(Bytes(5000, 1));
        var second = new MemoryChunk(Bytes(3, 9));
        await streamWriter.CommitChunkAsync(MigrationFrameType.PreCopyData, 0, first, Ct);
        await streamWriter.WriteFrameAsync(MigrationFrameType.PreCopyData, 1, Bytes(10, 4), Ct);
        await streamWriter.CommitChunkAsync(MigrationFrameType.StopCopyData, 1, second, Ct);
        await writer.CompleteAsync();
        // The stream's size counts a chunk frame as if its payload were in it.
        Assert.Equal(MigrationFrameCodec.PreambleSize + MigrationFrameCodec.FrameSize(5000) + MigrationFrameCodec.FrameSize(10) + MigrationFrameCodec.FrameSize(3), streamWriter.BytesWritten);

        var streamReader = new MigrationStreamReader(reader, MigrationStreamKind.Forward, MaxPayload);
        await streamReader.ReadPreambleAsync(Ct);
        var a = (await streamReader.ReadFrameAsync(Ct))!.Value;
        Assert.True(a.IsChunk);
        Assert.Same(first, a.Chunk);
        Assert.Equal(5000, a.Length);
        Assert.Equal(0, a.Payload.Length);
        var b = (await streamReader.ReadFrameAsync(Ct))!.Value;
        Assert.False(b.IsChunk);
        Assert.Equal(Bytes(10, 4), b.Payload.ToArray());
        Assert.True(first.Disposed); // the next read lets the last frame's chunk go
        var c = (await streamReader.ReadFrameAsync(Ct))!.Value;
        Assert.Same(second, c.Chunk);
        Assert.Equal(MigrationFrameType.StopCopyData, c.Type);
        Assert.Null(await streamReader.ReadFrameAsync(Ct));
        Assert.True(second.Disposed);
    }

    [Fact]
    public async Task A_chunk_frame_is_its_header_and_a_zero_trailer_and_only_a_chunk_carrying_reader_accepts_it()
    {
        var (writer, reader) = ProcessLocalPipe.Create(new PipeOptions(useSynchronizationContext: false));
        var streamWriter = new MigrationStreamWriter(writer, MigrationStreamKind.Forward, Devices, MaxPayload);
        await streamWriter.WritePreambleAsync(Ct);
        await streamWriter.CommitChunkAsync(MigrationFrameType.PreCopyData, 1, new MemoryChunk(Bytes(777, 0)), Ct);
        await writer.CompleteAsync();
        var result = await reader.ReadAsync(Ct);
        var bytes = result.Buffer.ToArray();
        reader.AdvanceTo(result.Buffer.End);
        var frame = bytes.AsSpan(MigrationFrameCodec.PreambleSize);
        Assert.Equal(MigrationFrameCodec.FrameHeaderSize + MigrationFrameCodec.FrameTrailerSize, frame.Length);
        Assert.Equal(MigrationFrameCodec.FlagPayloadChunk, frame[1]);
        Assert.Equal(777u, BinaryPrimitives.ReadUInt32LittleEndian(frame[4..]));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(frame[^4..]));

        // From any other transport (a network session's sealed frames included) the flag is a protocol error.
        var buffer = new ReadOnlySequence<byte>(frame.ToArray());
        var ex = Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _, transportAuthenticates: true));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        Assert.Contains("beside the stream", ex.Message, StringComparison.Ordinal);

        // A non-zero trailer is corruption.
        var bad = frame.ToArray();
        bad[^1] = 1;
        buffer = new ReadOnlySequence<byte>(bad);
        Assert.Equal(Errno.EBADMSG, Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _, transportCarriesChunks: true)).Errno);

        // Only data frames carry a chunk.
        var setup = frame.ToArray();
        setup[0] = (byte)MigrationFrameType.Setup;
        BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(12), Crc32C.Compute(setup.AsSpan(0, 12)));
        buffer = new ReadOnlySequence<byte>(setup);
        Assert.Equal(Errno.EPROTO, Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _, transportCarriesChunks: true)).Errno);
    }

    [Fact]
    public async Task A_chunk_frame_whose_chunk_is_missing_is_a_protocol_error()
    {
        // The frame's bytes without the queued chunk: the pipe's reader finds none.
        var (writer, reader) = ProcessLocalPipe.Create(new PipeOptions(useSynchronizationContext: false));
        var span = writer.GetSpan(MigrationFrameCodec.PreambleSize + 20);
        MigrationFrameCodec.WritePreamble(span, new MigrationStreamPreamble(MigrationStreamKind.Forward, MigrationFrameCodec.Version, Devices, MaxPayload));
        MigrationFrameCodec.SealChunkFrame(span[MigrationFrameCodec.PreambleSize..], MigrationFrameType.PreCopyData, 0, 0, 64);
        writer.Advance(MigrationFrameCodec.PreambleSize + 20);
        await writer.CompleteAsync();
        var streamReader = new MigrationStreamReader(reader, MigrationStreamKind.Forward, MaxPayload);
        await streamReader.ReadPreambleAsync(Ct);
        var ex = await Assert.ThrowsAsync<VfioException>(async () => await streamReader.ReadFrameAsync(Ct));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        Assert.Contains("none was queued", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_pipe_holds_at_most_its_chunks_and_a_gone_reader_drops_them_and_refuses_more()
    {
        var (writer, reader) = ProcessLocalPipe.Create(new PipeOptions(useSynchronizationContext: false), maxChunks: 2);
        var chunks = (IChunkPipeWriter)writer;
        var held = Enumerable.Range(0, 4).Select(i => new MemoryChunk(Bytes(10, (byte)i))).ToArray();
        await chunks.AddChunkAsync(held[0], Ct);
        await chunks.AddChunkAsync(held[1], Ct);
        var third = chunks.AddChunkAsync(held[2], Ct).AsTask();
        await Task.Delay(50, Ct);
        Assert.False(third.IsCompleted); // full: the writer waits for the reader

        Assert.Same(held[0], ((IChunkPipeReader)reader).TakeChunk());
        await third.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        await reader.CompleteAsync();
        Assert.True(held[1].Disposed);
        Assert.True(held[2].Disposed);
        var ex = await Assert.ThrowsAsync<VfioException>(async () => await chunks.AddChunkAsync(held[3], Ct));
        Assert.Equal(Errno.EPIPE, ex.Errno);
        Assert.True(held[3].Disposed);
        Assert.False(held[0].Disposed); // taken: the taker's
    }

    [Fact]
    public async Task A_writer_waiting_for_room_that_is_cancelled_drops_its_chunk()
    {
        var (writer, _) = ProcessLocalPipe.Create(new PipeOptions(useSynchronizationContext: false), maxChunks: 1);
        var chunks = (IChunkPipeWriter)writer;
        await chunks.AddChunkAsync(new MemoryChunk([1]), Ct);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        var waiting = new MemoryChunk([2]);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await chunks.AddChunkAsync(waiting, cts.Token));
        Assert.True(waiting.Disposed);
    }

    [Fact]
    public async Task A_plain_pipe_carries_no_chunks()
    {
        var pipe = new Pipe();
        var streamWriter = new MigrationStreamWriter(pipe.Writer, MigrationStreamKind.Forward, Devices, MaxPayload);
        Assert.False(streamWriter.CarriesChunks);
        await streamWriter.WritePreambleAsync(Ct);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await streamWriter.CommitChunkAsync(MigrationFrameType.PreCopyData, 0, new MemoryChunk([1]), Ct));
    }
}
