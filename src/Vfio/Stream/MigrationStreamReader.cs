using System.Buffers;
using System.IO.Pipelines;

namespace Vfio.Stream;

/// <summary>
/// Reads one migration stream (forward or return) from a <see cref="PipeReader"/>: the preamble, then
/// frames, each checked by <see cref="MigrationFrameCodec"/>. Frames of the wrong direction are rejected.
/// Never buffers more than one frame of at most the declared (and locally capped) payload size.
/// </summary>
internal sealed class MigrationStreamReader
{
    private const string Operation = "read migration stream";
    private readonly PipeReader _reader;
    private readonly bool _authenticated;
    private readonly IChunkPipeReader? _chunks;
    private Migration.DataChunk? _lastChunk;
    private readonly MigrationStreamKind _kind;
    private readonly uint _maxPayloadLimit;
    private bool _advancePending;
    private SequencePosition _consumed;
    private uint _sequence;

    /// <summary>Creates a reader of a <paramref name="kind"/> stream that accepts frames of at most <paramref name="maxPayloadLimit"/> payload bytes.</summary>
    public MigrationStreamReader(PipeReader reader, MigrationStreamKind kind, uint maxPayloadLimit = MigrationFrameCodec.HardMaxPayload)
    {
        _reader = reader ?? throw new ArgumentNullException(nameof(reader));
        _authenticated = reader is IAuthenticatedPipe { Authenticates: true };
        _chunks = reader as IChunkPipeReader;
        _kind = kind;
        _maxPayloadLimit = Math.Min(maxPayloadLimit, MigrationFrameCodec.HardMaxPayload);
    }

    /// <summary>The preamble, once <see cref="ReadPreambleAsync"/> returned.</summary>
    public MigrationStreamPreamble Preamble { get; private set; }

    /// <summary>Frames read so far.</summary>
    public uint FramesRead => _sequence;

    /// <summary>Reads and checks the preamble.</summary>
    /// <exception cref="VfioException">EPROTO/EBADMSG/EMSGSIZE for a bad preamble; EPIPE when the stream ends first.</exception>
    public async ValueTask<MigrationStreamPreamble> ReadPreambleAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCanceled)
                throw new OperationCanceledException("the pending read of the migration stream was canceled");
            var buffer = result.Buffer;
            if (MigrationFrameCodec.TryReadPreamble(ref buffer, _kind, _maxPayloadLimit, out var preamble))
            {
                _reader.AdvanceTo(buffer.Start);
                Preamble = preamble;
                return preamble;
            }
            if (result.IsCompleted)
            {
                _reader.AdvanceTo(buffer.End);
                throw new VfioException(Errno.EPIPE, Operation, buffer.IsEmpty
                    ? $"the {KindName} stream ended before its preamble"
                    : $"the {KindName} stream ended inside its preamble ({buffer.Length} of {MigrationFrameCodec.PreambleSize} bytes)");
            }
            _reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Called for each frame read: type, device, payload length (the engine's trace).</summary>
    internal Action<MigrationFrameType, ushort, int>? OnFrame { get; set; }

    /// <summary>
    /// Reads the next frame; null when the stream ended cleanly on a frame boundary. The returned payload
    /// is valid until the next call. A chunk frame's chunk is disposed by the next call too (a consumer that wrote it
    /// has emptied it already), so none outlives the frame that carried it.
    /// </summary>
    /// <exception cref="VfioException">EPROTO/EBADMSG/EMSGSIZE for a malformed frame; EPIPE when the stream ends inside a frame.</exception>
    public async ValueTask<MigrationFrame?> ReadFrameAsync(CancellationToken cancellationToken = default)
    {
        if (Preamble.Version == 0)
            throw new InvalidOperationException("ReadPreambleAsync must succeed before frames are read");
        if (_advancePending)
        {
            _advancePending = false;
            _reader.AdvanceTo(_consumed);
        }
        ReleaseChunk();
        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCanceled)
                throw new OperationCanceledException("the pending read of the migration stream was canceled");
            var buffer = result.Buffer;
            if (MigrationFrameCodec.TryReadFrame(ref buffer, Preamble.MaxPayload, _sequence, Preamble.DeviceCount, out var frame, _authenticated, _chunks is not null))
            {
                bool forward = MigrationFrameCodec.IsForward(frame.Type);
                if (forward != (_kind == MigrationStreamKind.Forward))
                    throw new VfioException(Errno.EPROTO, Operation, $"{frame} belongs to the {(forward ? "forward" : "return")} stream, not the {KindName} stream");
                if (frame.IsChunk)
                    frame = frame with { Chunk = _lastChunk = TakeChunk(frame) };
                _sequence++;
                _consumed = buffer.Start;
                _advancePending = true;
                OnFrame?.Invoke(frame.Type, frame.Device, frame.Length);
                return frame;
            }
            if (result.IsCompleted)
            {
                long left = buffer.Length;
                _reader.AdvanceTo(buffer.End);
                if (left == 0)
                    return null;
                throw new VfioException(Errno.EPIPE, Operation, $"the {KindName} stream ended inside frame {_sequence} ({left} bytes of it arrived)");
            }
            _reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    // The chunk the writer queued for this frame, which must be there and of the declared length.
    private Migration.DataChunk TakeChunk(MigrationFrame frame)
    {
        var chunk = _chunks!.TakeChunk()
            ?? throw new VfioException(Errno.EPROTO, Operation, $"{frame} carries its payload beside the stream, but none was queued");
        if (chunk.Length != frame.Length)
        {
            chunk.Dispose();
            throw new VfioException(Errno.EPROTO, Operation, $"{frame} declares {frame.Length} bytes, but its chunk holds {chunk.Length}");
        }
        return chunk;
    }

    /// <summary>Disposes the last frame's chunk, if any (also done by the next <see cref="ReadFrameAsync"/>).</summary>
    public void ReleaseChunk()
    {
        _lastChunk?.Dispose();
        _lastChunk = null;
    }

    private string KindName => _kind == MigrationStreamKind.Forward ? "forward" : "return";
}
