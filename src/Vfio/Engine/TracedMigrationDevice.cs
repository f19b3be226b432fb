using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Engine;

// A caller's device as the engine sees it: every SET (from the last known state, time, errno), reset, data
// session and PRECOPY_INFO answer is reported to the run's MigrationTrace; everything else passes through.
internal sealed class TracedMigrationDevice(IVfioMigrationDevice inner, int index, MigrationTrace trace) : IVfioMigrationDevice
{
    private VfioMigrationState? _state; // last known: null until read or set, and after a failed SET

    public IVfioMigrationDevice Inner => inner;

    public string Name => inner.Name;

    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default) => inner.GetCapabilitiesAsync(cancellationToken);

    public async ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default)
    {
        var state = await inner.GetStateAsync(cancellationToken).ConfigureAwait(false);
        _state = state;
        return state;
    }

    public async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        double start = trace.NowMs;
        var from = _state;
        IMigrationDataStream? stream;
        try
        {
            stream = await inner.SetStateAsync(target, cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException e)
        {
            _state = null;
            trace.Arc(index, from, target, start, e.Errno);
            throw;
        }
        catch (OperationCanceledException)
        {
            _state = null;
            trace.Arc(index, from, target, start, Errno.ECANCELED);
            throw;
        }
        _state = target;
        trace.Arc(index, from, target, start, null);
        return stream is null ? null : new TracedDataStream(stream, index, trace);
    }

    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default) => inner.GetStopCopySizeAsync(cancellationToken);

    // Members with default implementations must be forwarded, or the inner device's own answer is silently lost.
    public async ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default)
    {
        bool enabled = await inner.TryEnablePrecopyInfoV2Async(cancellationToken).ConfigureAwait(false);
        trace.PrecopyInfoV2(index, enabled);
        return enabled;
    }

    public ValueTask<Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default) => inner.GetProfileAsync(cancellationToken);

    public async ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        double start = trace.NowMs;
        try
        {
            await inner.ResetAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException e)
        {
            _state = null;
            trace.Reset(index, start, e.Errno);
            throw;
        }
        _state = VfioMigrationState.Running;
        trace.Reset(index, start, null);
    }

    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
        => inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => inner.StopDmaLoggingAsync(cancellationToken);

    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
        => inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    // The engine never disposes the caller's devices; the wrapper owns nothing.
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private sealed class TracedDataStream : IMigrationDataStream, IDataChunkSource, IDataChunkSink
    {
        private readonly IMigrationDataStream _inner;
        private readonly int _index;
        private readonly MigrationTrace _trace;
        private readonly double _opened;
        private long _bytes;
        private int _closed;

        public TracedDataStream(IMigrationDataStream inner, int index, MigrationTrace trace)
        {
            _inner = inner;
            _index = index;
            _trace = trace;
            _opened = trace.NowMs;
            trace.SessionOpened(index, inner.Kind);
        }

        public DataSessionKind Kind => _inner.Kind;

        public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            int n = await _inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (n > 0)
                _bytes += n;
            return n;
        }

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            _bytes += buffer.Length;
        }

        public async ValueTask<DataChunk?> ReadChunkAsync(int maxBytes, CancellationToken cancellationToken = default)
        {
            if (_inner is not IDataChunkSource source)
                return null;
            var chunk = await source.ReadChunkAsync(maxBytes, cancellationToken).ConfigureAwait(false);
            _bytes += chunk?.Length ?? 0;
            return chunk;
        }

        public async ValueTask<bool> TryWriteChunkAsync(DataChunk chunk, CancellationToken cancellationToken = default)
        {
            int length = chunk.Length;
            if (_inner is not IDataChunkSink sink || !await sink.TryWriteChunkAsync(chunk, cancellationToken).ConfigureAwait(false))
                return false;
            _bytes += length;
            return true;
        }

        public async ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default)
        {
            var info = await _inner.GetPrecopyInfoAsync(cancellationToken).ConfigureAwait(false);
            _trace.PrecopyInfo(_index, info);
            return info;
        }

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0)
                return;
            try
            {
                await _inner.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                _trace.SessionClosed(_index, _inner.Kind, _bytes, _opened);
            }
        }
    }
}
