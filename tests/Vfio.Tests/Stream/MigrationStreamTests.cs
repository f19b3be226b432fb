using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using CsCheck;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Tests.Stream;

public class MigrationStreamTests
{
    private const ushort Devices = 3;
    private const uint MaxPayload = 64 * 1024;

    internal sealed record FrameSpec(MigrationFrameType Type, ushort Device, byte[] Payload);

    // Frames that are valid on the forward stream: the generator respects each type's index and size rules.
    private static readonly Gen<FrameSpec> s_forwardFrame = Gen.OneOf(
        Gen.Select(Gen.UShort[0, Devices - 1], Gen.Byte.Array[1, 3000], (d, p) => new FrameSpec(MigrationFrameType.PreCopyData, d, p)),
        Gen.Select(Gen.UShort[0, Devices - 1], Gen.Byte.Array[1, 3000], (d, p) => new FrameSpec(MigrationFrameType.StopCopyData, d, p)),
        Gen.UShort[0, Devices - 1].Select(d => new FrameSpec(MigrationFrameType.InitDataSent, d, [])),
        Gen.Const(new FrameSpec(MigrationFrameType.Switchover, MigrationFrame.StreamLevel, [])),
        Gen.Const(new FrameSpec(MigrationFrameType.End, MigrationFrame.StreamLevel, [])),
        Gen.Select(Gen.UShort[0, Devices - 1], Gen.ULong, (d, v) => new FrameSpec(MigrationFrameType.DeviceEnd, d, U64(v))),
        Gen.Select(Gen.UShort[0, Devices - 1], Gen.Byte.Array[1, MigrationFrameCodec.SetupFixedSize], (d, p) => new FrameSpec(MigrationFrameType.Profile, d, p)),
        Gen.Select(Gen.UShort[0, Devices - 1], Gen.ULong, Gen.UInt[0, 7], Gen.String[0, 40], (d, caps, plan, name) =>
            new FrameSpec(MigrationFrameType.Setup, d, Setup(new MigrationDeviceSetup((VfioMigrationFlags)caps, caps ^ 0x55, (MigrationPlanFlags)plan, name)))),
        Gen.Select(Gen.Int[0, 4095], Gen.Byte[1, 8], Gen.String[0, 200], (e, ph, m) =>
            new FrameSpec(MigrationFrameType.Abort, MigrationFrame.StreamLevel, Status(new MigrationStatus((Errno)e, ph, m)))));

    private static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b;
    }

    private static byte[] Setup(MigrationDeviceSetup s)
    {
        var b = new byte[MigrationFrameCodec.SetupFixedSize + MigrationFrameCodec.MaxNameBytes];
        return b[..MigrationFrameCodec.WriteSetup(b, s)];
    }

    private static byte[] Status(MigrationStatus s)
    {
        var b = new byte[MigrationFrameCodec.StatusFixedSize + MigrationFrameCodec.MaxMessageBytes];
        return b[..MigrationFrameCodec.WriteStatus(b, s)];
    }

    private static async Task<byte[]> EncodeAsync(IEnumerable<FrameSpec> frames)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new MigrationStreamWriter(pipe.Writer, MigrationStreamKind.Forward, Devices, MaxPayload);
        await writer.WritePreambleAsync();
        foreach (var f in frames)
            await writer.WriteFrameAsync(f.Type, f.Device, f.Payload);
        await pipe.Writer.CompleteAsync();
        var result = await pipe.Reader.ReadAtLeastAsync(int.MaxValue);
        var bytes = result.Buffer.ToArray();
        pipe.Reader.AdvanceTo(result.Buffer.End);
        Assert.Equal(writer.BytesWritten, bytes.Length);
        return bytes;
    }

    // Feeds the bytes through a pipe in the given chunk sizes (so frames straddle segments) and decodes to the end.
    private static async Task<List<FrameSpec>> DecodeAsync(byte[] bytes, int[]? chunks = null)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, minimumSegmentSize: 512));
        int at = 0, k = 0;
        while (at < bytes.Length)
        {
            int n = chunks is { Length: > 0 } ? Math.Max(1, chunks[k++ % chunks.Length]) : bytes.Length;
            n = Math.Min(n, bytes.Length - at);
            await pipe.Writer.WriteAsync(bytes.AsMemory(at, n));
            at += n;
        }
        await pipe.Writer.CompleteAsync();
        var reader = new MigrationStreamReader(pipe.Reader, MigrationStreamKind.Forward, MaxPayload);
        await reader.ReadPreambleAsync();
        var frames = new List<FrameSpec>();
        while (await reader.ReadFrameAsync() is { } f)
            frames.Add(new FrameSpec(f.Type, f.Device, f.Payload.ToArray()));
        return frames;
    }

    [Fact]
    public void RandomFrameSequences_RoundTripThroughAnyChunking()
    {
        Gen.Select(s_forwardFrame.List[0, 12], Gen.Int[1, 5000].Array[1, 6]).Sample((frames, chunks) =>
        {
            var bytes = EncodeAsync(frames).GetAwaiter().GetResult();
            var decoded = DecodeAsync(bytes, chunks).GetAwaiter().GetResult();
            Assert.Equal(frames.Count, decoded.Count);
            for (int i = 0; i < frames.Count; i++)
            {
                Assert.Equal(frames[i].Type, decoded[i].Type);
                Assert.Equal(frames[i].Device, decoded[i].Device);
                Assert.Equal(frames[i].Payload, decoded[i].Payload);
            }
        }, iter: 300);
    }

    [Fact]
    public void SetupAndStatusPayloads_RoundTrip()
    {
        Gen.Select(Gen.ULong, Gen.ULong, Gen.UInt[0, 7], Gen.String[Gen.Char.AlphaNumeric, 0, 300]).Sample((caps, size, plan, name) =>
        {
            var s = new MigrationDeviceSetup((VfioMigrationFlags)caps, size, (MigrationPlanFlags)plan, name);
            var back = MigrationFrameCodec.ReadSetup(new ReadOnlySequence<byte>(Setup(s)));
            Assert.Equal(s.Capabilities, back.Capabilities);
            Assert.Equal(s.StopCopySize, back.StopCopySize);
            Assert.Equal(s.Plan, back.Plan);
            Assert.Equal(name.Length <= MigrationFrameCodec.MaxNameBytes ? name : name[..MigrationFrameCodec.MaxNameBytes], back.Name);
        }, iter: 300);
        Gen.Select(Gen.Int[0, 4095], Gen.Byte, Gen.String[Gen.Char.AlphaNumeric, 0, 100]).Sample((e, ph, m) =>
        {
            var back = MigrationFrameCodec.ReadStatus(new ReadOnlySequence<byte>(Status(new MigrationStatus((Errno)e, ph, m))));
            Assert.Equal((Errno)e, back.Errno);
            Assert.Equal(ph, back.Phase);
            Assert.Equal(m, back.Message);
        }, iter: 300);
    }

    private static Task<byte[]> SmallStreamAsync() => EncodeAsync(
    [
        new(MigrationFrameType.Setup, 0, Setup(new MigrationDeviceSetup(VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, 4096, MigrationPlanFlags.PreCopy, "sample:0"))),
        new(MigrationFrameType.PreCopyData, 0, [1, 2, 3, 4, 5, 6, 7, 8, 9]),
        new(MigrationFrameType.InitDataSent, 0, []),
        new(MigrationFrameType.Switchover, MigrationFrame.StreamLevel, []),
        new(MigrationFrameType.StopCopyData, 2, [0xAA, 0xBB]),
        new(MigrationFrameType.DeviceEnd, 0, U64(11)),
        new(MigrationFrameType.Abort, MigrationFrame.StreamLevel, Status(new MigrationStatus(Errno.EIO, 2, "boom"))),
        new(MigrationFrameType.End, MigrationFrame.StreamLevel, []),
    ]);

    [Fact]
    public async Task EveryBitFlip_IsACleanVfioException()
    {
        var bytes = await SmallStreamAsync();
        for (int pos = 0; pos < bytes.Length; pos++)
        {
            for (int bit = 0; bit < 8; bit++)
            {
                var copy = (byte[])bytes.Clone();
                copy[pos] ^= (byte)(1 << bit);
                var ex = await Assert.ThrowsAsync<VfioException>(() => DecodeAsync(copy).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
                Assert.Contains(ex.Errno, new[] { Errno.EPROTO, Errno.EBADMSG, Errno.EMSGSIZE, Errno.EPIPE });
            }
        }
    }

    [Fact]
    public async Task EveryTruncation_IsACleanErrorOrAShorterStream()
    {
        var bytes = await SmallStreamAsync();
        var full = await DecodeAsync(bytes);
        for (int len = 0; len < bytes.Length; len++)
        {
            try
            {
                var frames = await DecodeAsync(bytes[..len]).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
                // Cut exactly between frames: the decoder reports a clean end, and the End frame is missing.
                Assert.True(frames.Count < full.Count);
                Assert.NotEqual(MigrationFrameType.End, frames.LastOrDefault()?.Type);
            }
            catch (VfioException ex)
            {
                Assert.Equal(Errno.EPIPE, ex.Errno);
            }
        }
    }

    [Fact]
    public void RandomGarbage_NeverThrowsAnythingButVfioException()
    {
        Gen.Byte.Array[0, 200].Sample(bytes =>
        {
            try
            {
                DecodeAsync(bytes).WaitAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
                Assert.Fail("garbage decoded");
            }
            catch (VfioException)
            {
            }
        }, iter: 500);
    }

    [Fact]
    public void OversizedLength_IsRejectedFromTheHeaderAlone()
    {
        // Only the 16 header bytes are present: the decoder must refuse without waiting for 16 MiB.
        var header = new byte[MigrationFrameCodec.FrameHeaderSize];
        header[0] = (byte)MigrationFrameType.StopCopyData;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 16u << 20);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), Crc32C.Compute(header.AsSpan(0, 12)));
        var buffer = new ReadOnlySequence<byte>(header);
        var ex = Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _));
        Assert.Equal(Errno.EMSGSIZE, ex.Errno);
    }

    [Theory]
    [InlineData((byte)MigrationFrameType.PreCopyData, 7, 4, "the stream has 3 devices")]          // device out of range
    [InlineData((byte)MigrationFrameType.PreCopyData, 0, 0, "at least 1")]                          // empty data
    [InlineData((byte)MigrationFrameType.End, 0, 0, "it is a stream-level frame")]                  // End must be stream-level
    [InlineData((byte)MigrationFrameType.InitDataSent, 0xFFFF, 0, "must name a device")]           // marker needs a device
    [InlineData((byte)MigrationFrameType.DeviceEnd, 0, 4, "8 payload bytes")]                       // wrong size
    [InlineData((byte)MigrationFrameType.Profile, 0, 0, "1–4096 payload bytes")]                   // empty profile
    [InlineData((byte)MigrationFrameType.Profile, 0, 4097, "1–4096 payload bytes")]                // profile above MaxBytes
    [InlineData((byte)MigrationFrameType.Profile, 0xFFFF, 8, "must name a device")]                // profile needs a device
    [InlineData((byte)0x30, 0, 0, "unknown type")]                              // unknown
    public void MalformedFrames_AreRejectedWithEproto(byte frameType, int device, int length, string words)
    {
        var type = (MigrationFrameType)frameType; // the frame types are internal; the theory passes their values
        var frame = new byte[MigrationFrameCodec.FrameSize(length)];
        MigrationFrameCodec.SealFrame(frame, type, (ushort)device, 0, length);
        var buffer = new ReadOnlySequence<byte>(frame);
        var ex = Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        Assert.Contains(words, ex.Message, StringComparison.Ordinal);
    }

    // A data frame over a transport that authenticates every byte (the network session's sealed frames) carries
    // flag 0x01 and a zero trailer instead of its payload CRC; only such a transport's reader accepts it.
    private static byte[] DataFrame(bool payloadChecked, MigrationFrameType type = MigrationFrameType.StopCopyData, int length = 100)
    {
        var frame = new byte[MigrationFrameCodec.FrameSize(length)];
        frame.AsSpan(MigrationFrameCodec.FrameHeaderSize, length).Fill(0x5A);
        MigrationFrameCodec.SealFrame(frame, type, 1, 0, length, payloadChecked);
        return frame;
    }

    [Fact]
    public void UncheckedDataFrame_IsReadOnlyFromAnAuthenticatingTransport()
    {
        var frame = DataFrame(payloadChecked: false);
        Assert.Equal(MigrationFrameCodec.FlagPayloadUnchecked, frame[1]);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(frame.AsSpan(frame.Length - 4)));
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.True(MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out var read, transportAuthenticates: true));
        Assert.Equal(100, read.Length);

        buffer = new ReadOnlySequence<byte>(frame);
        var ex = Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        Assert.Contains("no payload CRC", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OverAnAuthenticatingTransport_OnlyDataFramesDropTheirCrc_AndCheckedFramesAreStillChecked()
    {
        // A non-data frame keeps its CRC even when the writer may drop it.
        var setup = DataFrame(payloadChecked: false, MigrationFrameType.Setup, MigrationFrameCodec.SetupFixedSize);
        Assert.Equal(0, setup[1]);
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(setup.Length - 4)));

        // A frame that does carry a CRC is checked by an authenticating transport's reader too.
        var frame = DataFrame(payloadChecked: true);
        frame[MigrationFrameCodec.FrameHeaderSize + 7] ^= 1;
        var buffer = new ReadOnlySequence<byte>(frame);
        var ex = Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _, transportAuthenticates: true));
        Assert.Equal(Errno.EBADMSG, ex.Errno);

        // The header CRC covers the flag: flipping it in transit is caught before anything else.
        var flipped = DataFrame(payloadChecked: true);
        flipped[1] ^= MigrationFrameCodec.FlagPayloadUnchecked;
        buffer = new ReadOnlySequence<byte>(flipped);
        Assert.Equal(Errno.EBADMSG, Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 0, Devices, out _, transportAuthenticates: true)).Errno);
    }

    [Fact]
    public async Task InProcessPipe_DataFramesSkipTheirCrc_AndOnlyItsOwnReaderAcceptsThem()
    {
        var ct = TestContext.Current.CancellationToken;
        // docs/stream-format.md, flags: the engine's in-process pipe is a transport whose bytes never leave the process.
        var (writer, reader) = Vfio.Engine.ProcessLocalPipe.Create(new PipeOptions(useSynchronizationContext: false));
        var streamWriter = new MigrationStreamWriter(writer, MigrationStreamKind.Forward, Devices, MaxPayload);
        await streamWriter.WritePreambleAsync(ct);
        var payload = streamWriter.GetPayloadBuffer(100);
        payload.Span[..100].Fill(0x5A);
        await streamWriter.CommitAsync(MigrationFrameType.PreCopyData, 1, 100, ct);
        await writer.CompleteAsync();

        // The bytes in the pipe: flag "payload unchecked" and a zero trailer on the data frame.
        var result = await reader.ReadAsync(ct);
        var bytes = result.Buffer.ToArray();
        var frame = bytes.AsSpan(MigrationFrameCodec.PreambleSize);
        Assert.Equal(MigrationFrameCodec.FlagPayloadUnchecked, frame[1]);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(frame[^4..]));
        reader.AdvanceTo(result.Buffer.Start);

        // The pipe's own reader accepts the frame; the same bytes from a plain pipe are refused.
        var streamReader = new MigrationStreamReader(reader, MigrationStreamKind.Forward, MaxPayload);
        await streamReader.ReadPreambleAsync(ct);
        var read = await streamReader.ReadFrameAsync(ct);
        Assert.NotNull(read);
        Assert.Equal(MigrationFrameType.PreCopyData, read.Value.Type);
        Assert.Equal(100, read.Value.Length);

        var plain = new MigrationStreamReader(PipeReader.Create(new ReadOnlySequence<byte>(bytes)), MigrationStreamKind.Forward, MaxPayload);
        await plain.ReadPreambleAsync(ct);
        Assert.Equal(Errno.EPROTO, (await Assert.ThrowsAsync<VfioException>(async () => await plain.ReadFrameAsync(ct))).Errno);
    }

    [Fact]
    public void SequenceGap_IsRejectedWithEproto()
    {
        var frame = new byte[MigrationFrameCodec.FrameSize(0)];
        MigrationFrameCodec.SealFrame(frame, MigrationFrameType.End, MigrationFrame.StreamLevel, 5, 0);
        var buffer = new ReadOnlySequence<byte>(frame);
        var ex = Assert.Throws<VfioException>(() => MigrationFrameCodec.TryReadFrame(ref buffer, MaxPayload, 4, Devices, out _));
        Assert.Equal(Errno.EPROTO, ex.Errno);
    }

    [Fact]
    public async Task ReturnFrameOnTheForwardStream_IsRejected()
    {
        var pipe = new Pipe();
        var writer = new MigrationStreamWriter(pipe.Writer, MigrationStreamKind.Forward, 1);
        await writer.WritePreambleAsync(TestContext.Current.CancellationToken);
        await writer.WriteUInt64Async(MigrationFrameType.Ready, 0, 7, TestContext.Current.CancellationToken);
        await pipe.Writer.CompleteAsync();
        var reader = new MigrationStreamReader(pipe.Reader, MigrationStreamKind.Forward);
        await reader.ReadPreambleAsync(TestContext.Current.CancellationToken);
        var ex = await Assert.ThrowsAsync<VfioException>(async () => await reader.ReadFrameAsync(TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EPROTO, ex.Errno);
    }

    [Fact]
    public void Preamble_HasTheDocumentedLayout()
    {
        var p = new byte[MigrationFrameCodec.PreambleSize];
        MigrationFrameCodec.WritePreamble(p, new MigrationStreamPreamble(MigrationStreamKind.Forward, 1, 2, 1 << 20));
        Assert.Equal("VFMIGFWD"u8.ToArray(), p[..8]);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(p.AsSpan(8)));
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(p.AsSpan(10)));
        Assert.Equal(1u << 20, BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(12)));
        Assert.Equal(Crc32C.Compute(p.AsSpan(0, 16)), BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(16)));

        var f = new byte[MigrationFrameCodec.FrameSize(3)];
        MigrationFrameCodec.WriteFrame(f, MigrationFrameType.StopCopyData, 1, 9, [7, 8, 9]);
        Assert.Equal(new byte[] { 0x05, 0x00, 0x01, 0x00, 0x03, 0, 0, 0, 0x09, 0, 0, 0 }, f[..12]);
        Assert.Equal(Crc32C.Compute(f.AsSpan(0, 12)), BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(12)));
        Assert.Equal(new byte[] { 7, 8, 9 }, f[16..19]);
        Assert.Equal(Crc32C.Compute(f.AsSpan(0, 19)), BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(19)));
    }

    [Fact]
    public async Task PreambleDeclaringHugeFrames_IsRejectedWithEmsgsize()
    {
        var p = new byte[MigrationFrameCodec.PreambleSize];
        MigrationFrameCodec.WritePreamble(p, new MigrationStreamPreamble(MigrationStreamKind.Forward, MigrationFrameCodec.Version, 1, 64u << 20));
        var reader = new MigrationStreamReader(PipeReader.Create(new ReadOnlySequence<byte>(p)), MigrationStreamKind.Forward);
        var ex = await Assert.ThrowsAsync<VfioException>(async () => await reader.ReadPreambleAsync(TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EMSGSIZE, ex.Errno);
    }
}
