using System.IO.Pipelines;

namespace Vfio.Stream;

/// <summary>
/// Writes one migration stream into a <see cref="PipeWriter"/>: the preamble, then sealed frames, each
/// flushed. Data frames can be filled in place (<see cref="GetPayloadBuffer"/> then
/// <see cref="CommitAsync"/>) so device bytes are read straight into the pipe. Not thread-safe: one writer per stream.
/// </summary>
internal sealed class MigrationStreamWriter
{
    private const string Operation = "write migration stream";
    private readonly PipeWriter _writer;
    private readonly bool _payloadChecked;
    private Memory<byte> _frame;
    private uint _sequence;

    /// <summary>Creates a writer for a stream with <paramref name="deviceCount"/> devices and frames of at most <paramref name="maxPayload"/> bytes.</summary>
    public MigrationStreamWriter(PipeWriter writer, MigrationStreamKind kind, ushort deviceCount, uint maxPayload = MigrationFrameCodec.DefaultMaxPayload)
    {
        _writer = writer ?? throw new ArgumentNullException(nameof(writer));
        _payloadChecked = writer is not IAuthenticatedPipe { Authenticates: true };
        ArgumentOutOfRangeException.ThrowIfZero(deviceCount);
        ArgumentOutOfRangeException.ThrowIfEqual(deviceCount, MigrationFrame.StreamLevel);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPayload, (uint)(MigrationFrameCodec.MaxMessageBytes + MigrationFrameCodec.StatusFixedSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxPayload, MigrationFrameCodec.HardMaxPayload);
        Preamble = new MigrationStreamPreamble(kind, MigrationFrameCodec.Version, deviceCount, maxPayload);
    }

    /// <summary>The preamble this writer writes.</summary>
    public MigrationStreamPreamble Preamble { get; }

    /// <summary>Bytes written so far (preamble and frames; a chunk frame counts as if its payload were in the stream).</summary>
    public long BytesWritten { get; private set; }

    /// <summary>Called after each frame is written: type, device, payload length (the engine's trace).</summary>
    internal Action<MigrationFrameType, ushort, int>? OnFrame { get; set; }

    /// <summary>Frames written so far.</summary>
    public uint FramesWritten => _sequence;

    /// <summary>Writes the preamble.</summary>
    /// <exception cref="VfioException">EPIPE when the reader went away.</exception>
    public ValueTask WritePreambleAsync(CancellationToken cancellationToken = default)
    {
        var span = _writer.GetSpan(MigrationFrameCodec.PreambleSize);
        MigrationFrameCodec.WritePreamble(span, Preamble);
        _writer.Advance(MigrationFrameCodec.PreambleSize);
        BytesWritten += MigrationFrameCodec.PreambleSize;
        return FlushAsync(cancellationToken);
    }

    /// <summary>Writes one frame with the given payload and flushes.</summary>
    public ValueTask WriteFrameAsync(MigrationFrameType type, ushort device, ReadOnlySpan<byte> payload, CancellationToken cancellationToken = default)
    {
        if ((uint)payload.Length > Preamble.MaxPayload)
            throw new ArgumentOutOfRangeException(nameof(payload), payload.Length, $"payload above the stream's limit of {Preamble.MaxPayload}");
        var span = _writer.GetSpan(MigrationFrameCodec.FrameSize(payload.Length));
        int n = MigrationFrameCodec.WriteFrame(span, type, device, _sequence++, payload);
        _writer.Advance(n);
        BytesWritten += n;
        OnFrame?.Invoke(type, device, payload.Length);
        return FlushAsync(cancellationToken);
    }

    /// <summary>Writes a frame whose payload is a status (errno, phase, words).</summary>
    public ValueTask WriteStatusAsync(MigrationFrameType type, ushort device, MigrationStatus status, CancellationToken cancellationToken = default)
    {
        Span<byte> payload = stackalloc byte[MigrationFrameCodec.StatusFixedSize + MigrationFrameCodec.MaxMessageBytes];
        int n = MigrationFrameCodec.WriteStatus(payload, status);
        return WriteFrameAsync(type, device, payload[..n], cancellationToken);
    }

    /// <summary>Writes a frame whose payload is one u64.</summary>
    public ValueTask WriteUInt64Async(MigrationFrameType type, ushort device, ulong value, CancellationToken cancellationToken = default)
    {
        Span<byte> payload = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        return WriteFrameAsync(type, device, payload, cancellationToken);
    }

    /// <summary>Writes a setup frame.</summary>
    public ValueTask WriteSetupAsync(ushort device, MigrationDeviceSetup setup, CancellationToken cancellationToken = default)
    {
        Span<byte> payload = stackalloc byte[MigrationFrameCodec.SetupFixedSize + MigrationFrameCodec.MaxNameBytes];
        int n = MigrationFrameCodec.WriteSetup(payload, setup);
        return WriteFrameAsync(MigrationFrameType.Setup, device, payload[..n], cancellationToken);
    }

    /// <summary>
    /// Returns a buffer of up to <paramref name="maxLength"/> bytes inside the pipe for the payload of the
    /// next frame. Fill some of it, then call <see cref="CommitAsync"/>; or call nothing to abandon it.
    /// </summary>
    public Memory<byte> GetPayloadBuffer(int maxLength)
    {
        maxLength = (int)Math.Min((uint)maxLength, Preamble.MaxPayload);
        _frame = _writer.GetMemory(MigrationFrameCodec.FrameSize(maxLength));
        return _frame.Slice(MigrationFrameCodec.FrameHeaderSize, maxLength);
    }

    /// <summary>Seals the frame filled through <see cref="GetPayloadBuffer"/> with <paramref name="length"/> payload bytes and flushes.</summary>
    public ValueTask CommitAsync(MigrationFrameType type, ushort device, int length, CancellationToken cancellationToken = default)
    {
        if (_frame.IsEmpty)
            throw new InvalidOperationException("GetPayloadBuffer was not called");
        if (length < 0 || length > _frame.Length - MigrationFrameCodec.FrameHeaderSize - MigrationFrameCodec.FrameTrailerSize)
            throw new ArgumentOutOfRangeException(nameof(length));
        int n = MigrationFrameCodec.SealFrame(_frame.Span, type, device, _sequence++, length, _payloadChecked);
        _frame = default;
        _writer.Advance(n);
        BytesWritten += n;
        OnFrame?.Invoke(type, device, length);
        return FlushAsync(cancellationToken);
    }

    /// <summary>True when data frames can carry their payload beside the stream (<see cref="CommitChunkAsync"/>).</summary>
    public bool CarriesChunks => _writer is IChunkPipeWriter;

    /// <summary>
    /// Writes a data frame whose payload is <paramref name="chunk"/>, carried beside the stream, and flushes. The
    /// chunk then belongs to the pipe (disposed here too when the reader went away).
    /// </summary>
    public async ValueTask CommitChunkAsync(MigrationFrameType type, ushort device, Migration.DataChunk chunk, CancellationToken cancellationToken = default)
    {
        if (_writer is not IChunkPipeWriter chunks)
            throw new InvalidOperationException("this pipe carries no chunks");
        if (chunk.Length <= 0 || (uint)chunk.Length > Preamble.MaxPayload)
            throw new ArgumentOutOfRangeException(nameof(chunk), chunk.Length, $"a chunk frame carries 1 to {Preamble.MaxPayload} bytes");
        int length = chunk.Length;
        await chunks.AddChunkAsync(chunk, cancellationToken).ConfigureAwait(false);
        // Queued: its frame follows at once, with no await between, so the queue and the frames keep one order.
        var span = _writer.GetSpan(MigrationFrameCodec.FrameHeaderSize + MigrationFrameCodec.FrameTrailerSize);
        int n = MigrationFrameCodec.SealChunkFrame(span, type, device, _sequence++, length);
        _writer.Advance(n);
        BytesWritten += MigrationFrameCodec.FrameSize(length); // the stream's size as if the payload were in it
        OnFrame?.Invoke(type, device, length);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        FlushResult result;
        try
        {
            result = await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex) when (ex is not VfioException)
        {
            throw new VfioException(Errno.EPIPE, Operation, $"the transport failed: {ex.Message}", ex);
        }
        if (result.IsCompleted)
            throw new VfioException(Errno.EPIPE, Operation, "the peer stopped reading the stream");
        if (result.IsCanceled)
            throw new OperationCanceledException("the stream flush was canceled");
    }
}
