using Vfio.Uapi;

namespace Vfio.Device;

// DMA logging (features 6/7/8, spec §5): the core's validation runs here; the device tracks.
public abstract partial class MigrationDevice
{
    /// <summary>True when the device implements DMA logging; otherwise every logging call is ENOTTY.</summary>
    public virtual bool SupportsDmaLogging => false;

    /// <summary>DMA_LOGGING_START: validates as the kernel does, then starts tracking.</summary>
    /// <returns>The page size (granularity) the device chose.</returns>
    /// <exception cref="VfioException">ENOTTY without logging support; EINVAL/E2BIG/EOVERFLOW for bad ranges; device errors.</exception>
    public ulong StartDmaLogging(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
    {
        RequireLogging("DMA_LOGGING_START");
        var sorted = (_faults & EngineFaults.SkipDmaLoggingValidation) != 0
            ? [.. ranges]
            : DmaLoggingValidator.ValidateStart(pageSize, ranges);
        Lock();
        try
        {
            OnDmaLoggingStart(ref pageSize, sorted);
            return pageSize;
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>DMA_LOGGING_STOP.</summary>
    public void StopDmaLogging()
    {
        RequireLogging("DMA_LOGGING_STOP");
        Lock();
        try
        {
            OnDmaLoggingStop();
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>
    /// DMA_LOGGING_REPORT: sets the bit of every page written since the last report (bit n of the
    /// bitmap = page iova + n·pageSize, little-endian word order) and clears the device's log for the range.
    /// </summary>
    public void ReportDmaLogging(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
    {
        RequireLogging("DMA_LOGGING_REPORT");
        if ((_faults & EngineFaults.SkipDmaLoggingValidation) == 0)
            DmaLoggingValidator.ValidateReport(iova, length, pageSize, bitmap.Length);
        Lock();
        try
        {
            OnDmaLoggingReadAndClear(iova, length, pageSize, bitmap);
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>
    /// Records that guest memory at [<paramref name="iova"/>, +<paramref name="length"/>) was written behind the
    /// client's back (a vfio-user server writing through its mmap of an fd-backed DMA mapping, spec §7.6). A device
    /// with DMA logging reports those pages dirty; others ignore it.
    /// </summary>
    public void MarkDmaWritten(ulong iova, ulong length)
    {
        if (SupportsDmaLogging && length > 0)
            OnDmaWritten(iova, length);
    }

    /// <summary>
    /// A direct write into guest memory happened (see <see cref="MarkDmaWritten"/>); runs without the state lock, on
    /// the writer's thread. The default ignores it: a device whose DMA target is its own state tracks that itself.
    /// </summary>
    protected virtual void OnDmaWritten(ulong iova, ulong length) { }

    /// <summary>Starts tracking the validated, sorted ranges; may change <paramref name="pageSize"/>.</summary>
    protected virtual void OnDmaLoggingStart(ref ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
        => VfioException.Throw(Errno.ENOTTY, "DMA_LOGGING_START", "the device has no DMA logging");

    /// <summary>Stops tracking.</summary>
    protected virtual void OnDmaLoggingStop() { }

    /// <summary>Sets bits for dirtied pages in the range and clears them from the device log; never clears user bits.</summary>
    protected virtual void OnDmaLoggingReadAndClear(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
        => VfioException.Throw(Errno.ENOTTY, "DMA_LOGGING_REPORT", "the device has no DMA logging");

    private void RequireLogging(string operation)
    {
        if (!SupportsDmaLogging)
            VfioException.Throw(Errno.ENOTTY, operation, "the device has no DMA logging");
    }
}
