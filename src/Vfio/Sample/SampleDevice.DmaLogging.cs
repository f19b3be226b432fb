using Vfio.Uapi;

namespace Vfio.Sample;

// DMA logging: the device's state pages double as its DMA target, page p at IOVA p × page size.
// Workload writes inside a logged range set a bit; reports read and clear it.
public sealed partial class SampleDevice
{
    private readonly PageBitmap _dmaDirty;
    private bool _loggingActive;
    private VfioDmaLoggingRange[] _loggedRanges = [];

    /// <inheritdoc/>
    public override bool SupportsDmaLogging => true;

    /// <inheritdoc/>
    protected override void OnDmaLoggingStart(ref ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
    {
        lock (_memLock)
        {
            if (_loggingActive)
                throw new VfioException(Errno.EINVAL, "DMA_LOGGING_START", "logging is already started; stop it first");
            _loggedRanges = [.. ranges];
            _dmaDirty.ClearAll();
            _loggingActive = true;
        }
        // The device tracks at its own page granularity and tells the caller so.
        pageSize = (ulong)_memory.PageSize;
    }

    /// <inheritdoc/>
    protected override void OnDmaLoggingStop()
    {
        lock (_memLock)
        {
            _loggingActive = false;
            _dmaDirty.ClearAll();
        }
    }

    /// <inheritdoc/>
    protected override void OnDmaLoggingReadAndClear(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
    {
        lock (_memLock)
        {
            if (!_loggingActive)
                throw new VfioException(Errno.EINVAL, "DMA_LOGGING_REPORT", "logging is not started");
            ulong devicePage = (ulong)_memory.PageSize;
            ulong end = Math.Min(iova + length, (ulong)_memory.Size);
            for (ulong page = iova / devicePage; page * devicePage < end; page++)
            {
                if (!_dmaDirty.IsSet((long)page))
                    continue;
                if (!Has(SampleDeviceFaults.LoggingNoClear))
                    _dmaDirty.Clear((long)page);
                // Set every report bit the dirty device page overlaps.
                ulong from = Math.Max(page * devicePage, iova);
                ulong to = Math.Min((page + 1) * devicePage, iova + length);
                for (ulong bit = (from - iova) / pageSize; bit <= (to - 1 - iova) / pageSize; bit++)
                    bitmap[(int)(bit / 64)] |= 1UL << (int)(bit % 64);
            }
        }
    }

    // Must hold _memLock.
    private bool IsLogged(long page)
    {
        ulong at = (ulong)page * (ulong)_memory.PageSize;
        foreach (var r in _loggedRanges)
        {
            if (at >= r.Iova && at - r.Iova < r.Length)
                return true;
        }
        return false;
    }
}
