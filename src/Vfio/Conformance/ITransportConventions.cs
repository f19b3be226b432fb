namespace Vfio.Conformance;

/// <summary>
/// Optional: a transport whose protocol defines a request differently from the kernel implements this, so
/// <c>vfio-mig check</c> holds the device to its own protocol's rule instead of the kernel's.
/// </summary>
public interface ITransportConventions
{
    /// <summary>
    /// True when DMA_LOGGING_START with 0 ranges means "log everything" (vfio-user, as libvfio-user and its
    /// sample client use it) rather than EINVAL (the kernel, spec §5.1).
    /// </summary>
    bool DmaLoggingZeroRangesMeansAll { get; }
}
