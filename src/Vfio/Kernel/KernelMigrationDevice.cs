using Microsoft.Extensions.Logging;
using Vfio.Device;
using Vfio.Interop;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Kernel;

/// <summary>
/// <see cref="IVfioMigrationDevice"/> over a real kernel VFIO device: VFIO_DEVICE_FEATURE (0x3B75) with the
/// exact call buffers of spec §1.8, VFIO_DEVICE_RESET (0x3B6F), and the migration data fd the kernel returns
/// from SET MIG_DEVICE_STATE wrapped as a <see cref="KernelMigrationDataStream"/>.
/// </summary>
/// <remarks>
/// After any failed SET the state is read back with GET (spec §3.2: the kernel echoes the request, never the
/// real state) and the exception says which state the device is in. Kernel errnos surface unchanged.
/// </remarks>
public sealed class KernelMigrationDevice : IVfioMigrationDevice, IDeviceDigestSource
{
    private readonly bool _ownsDevice;

    /// <summary>Wraps an open device; disposes it with this object when <paramref name="ownsDevice"/>.</summary>
    public KernelMigrationDevice(KernelVfioDevice device, bool ownsDevice = true)
    {
        Device = device ?? throw new ArgumentNullException(nameof(device));
        _ownsDevice = ownsDevice;
    }

    /// <summary>Opens <c>vfio:<paramref name="name"/></c> (mdev UUID or PCI BDF) through its group.</summary>
    public static KernelMigrationDevice Open(string name, VfioHostPaths? paths = null, ILoggerFactory? loggerFactory = null)
        => new(KernelVfioDevice.Open(name, paths, loggerFactory), ownsDevice: true);

    /// <summary>The underlying device (regions, info, reset).</summary>
    public KernelVfioDevice Device { get; }

    /// <inheritdoc/>
    public string Name => "vfio:" + Device.Name;

    /// <summary>PROBE|MIGRATION: true when the device supports migration (false on ENOTTY).</summary>
    public bool ProbeMigration()
    {
        var call = VfioFeatureCall.ProbeMigration();
        int rc = Device.Feature(call);
        if (rc == -(int)Errno.ENOTTY)
            return false;
        Check(rc, "PROBE MIGRATION");
        return true;
    }

    /// <summary>GET MIGRATION, synchronously.</summary>
    public VfioMigrationFlags GetCapabilities()
    {
        var call = VfioFeatureCall.GetMigration();
        Check(Device.Feature(call), "GET MIGRATION", errno => errno == Errno.ENOTTY ? "the device does not support migration" : null);
        return (VfioMigrationFlags)VfioDeviceFeatureMigration.Decode(call.AsSpan(VfioDeviceFeature.Size)).Flags;
    }

    /// <summary>GET MIG_DEVICE_STATE, synchronously.</summary>
    public VfioMigrationState GetState()
    {
        var call = VfioFeatureCall.GetState();
        Check(Device.Feature(call), "GET device_state", errno => errno == Errno.ENOTTY ? "the device does not support migration" : null);
        return (VfioMigrationState)VfioDeviceFeatureMigState.Decode(call.AsSpan(VfioDeviceFeature.Size)).DeviceState;
    }

    /// <summary>SET MIG_DEVICE_STATE, synchronously; see <see cref="SetStateAsync"/>.</summary>
    public KernelMigrationDataStream? SetState(VfioMigrationState target)
    {
        var call = VfioFeatureCall.SetState(target);
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        int rc = Device.Feature(call);
        string operation = $"SET device_state {MigrationStateMachine.Name(target)}";
        if (rc < 0)
        {
            try
            {
                ThrowSetFailed((Errno)(-rc), target, operation);
            }
            catch (VfioException e)
            {
                KernelLog.StateSetFailed(Device.Logger, Name, target, e);
                throw;
            }
        }

        var result = VfioDeviceFeatureMigState.Decode(call.AsSpan(VfioDeviceFeature.Size));
        KernelLog.StateSet(Device.Logger, Name, target, started, result.DataFd);
        if (result.DataFd < 0)
            return null;
        var kind = target == VfioMigrationState.Resuming ? DataSessionKind.Resuming : DataSessionKind.Saving;
        return new KernelMigrationDataStream(new SafeFdHandle(result.DataFd, ownsHandle: true), kind, $"{Name} {MigrationStateMachine.Name(target)} data fd {result.DataFd}");
    }

    /// <inheritdoc/>
    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(GetCapabilities());
    }

    /// <inheritdoc/>
    public ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(GetState());
    }

    /// <inheritdoc/>
    /// <exception cref="VfioException">The kernel's errno; the message names the state a GET reported afterwards.</exception>
    public ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult<IMigrationDataStream?>(SetState(target));
    }

    // Read-back: region 0 through the device fd (the test driver's state; BAR0 of a PCI device).
    string IDeviceDigestSource.DigestKind => DeviceDigests.KernelRegion0Kind;

    string IDeviceDigestSource.ReadBackName => "region 0";

    bool IDeviceDigestSource.ReadsLocally => true;

    ValueTask<ulong?> IDeviceDigestSource.GetReadBackSizeAsync(CancellationToken cancellationToken)
        => ValueTask.FromResult<ulong?>(Device.GetRegionInfo(0).Size);

    ValueTask<byte[]> IDeviceDigestSource.ComputeSha256Async(ulong size, CancellationToken cancellationToken)
        => DeviceDigests.Sha256WhilePausedAsync(this, size, (at, chunk, _) =>
        {
            Device.ReadRegion(0, at, chunk.Span);
            return ValueTask.CompletedTask;
        }, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var call = VfioFeatureCall.GetMigDataSize();
        Check(Device.Feature(call), "GET MIG_DATA_SIZE", errno => errno is Errno.ENOTTY or Errno.EINVAL
            ? "the kernel or driver has no MIG_DATA_SIZE feature (added in Linux 6.2; older kernels pass feature 9 to the driver, which refuses it)"
            : null);
        return ValueTask.FromResult(VfioDeviceFeatureMigDataSize.Decode(call.AsSpan(VfioDeviceFeature.Size)).StopCopyLength);
    }

    /// <inheritdoc/>
    public ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Device.Reset();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(StartDmaLogging(pageSize, ranges));
    }

    /// <inheritdoc/>
    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var call = VfioFeatureCall.DmaLoggingStop();
        Check(Device.Feature(call), "DMA_LOGGING_STOP", ExplainLogging);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ReportDmaLogging(iova, length, pageSize, bitmap.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary>DMA_LOGGING_START with the range array pinned and its address in <c>control.ranges</c>.</summary>
    public unsafe ulong StartDmaLogging(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        var array = new byte[ranges.Count * VfioDmaLoggingRange.Size];
        for (int i = 0; i < ranges.Count; i++)
            ranges[i].Encode(array.AsSpan(i * VfioDmaLoggingRange.Size));
        fixed (byte* p = array)
        {
            var call = VfioFeatureCall.DmaLoggingStart(pageSize, (uint)ranges.Count, ranges.Count == 0 ? 0 : (ulong)p);
            Check(Device.Feature(call), "DMA_LOGGING_START", ExplainLogging);
            return VfioDmaLoggingControl.Decode(call.AsSpan(VfioDeviceFeature.Size)).PageSize;
        }
    }

    /// <summary>DMA_LOGGING_REPORT with <paramref name="bitmap"/> pinned and its address in <c>report.bitmap</c>.</summary>
    public unsafe void ReportDmaLogging(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
    {
        // A page size the kernel will reject (0, below 4096, not a power of two) goes through unchecked so the
        // caller sees the kernel's own EINVAL; otherwise a short bitmap is caught here, before the kernel writes past it.
        ulong needed = pageSize >= 4096 && ulong.IsPow2(pageSize) ? VfioDmaLoggingReport.BitmapWords(length, pageSize) : 0;
        if ((ulong)bitmap.Length < needed)
            throw new ArgumentException($"the bitmap needs {needed} u64 words for {length} bytes at page size {pageSize}", nameof(bitmap));
        fixed (ulong* p = bitmap)
        {
            var call = VfioFeatureCall.DmaLoggingReport(iova, length, pageSize, (ulong)p);
            Check(Device.Feature(call), "DMA_LOGGING_REPORT", ExplainLogging);
        }
    }

    /// <summary>
    /// SET|MIG_PRECOPY_INFOv2 (Linux 7.1): opt in to REINIT reporting for as long as the device stays open.
    /// True when the kernel accepted it; false when the kernel or device does not offer it (ENOTTY, or EINVAL
    /// from kernels before 7.1 and from devices without PRE_COPY). Other errnos throw.
    /// </summary>
    public bool TryEnablePrecopyInfoV2()
    {
        var call = VfioFeatureCall.OptInPrecopyInfoV2();
        int rc = Device.Feature(call);
        if (rc == -(int)Errno.ENOTTY || rc == -(int)Errno.EINVAL)
            return false;
        Check(rc, "SET MIG_PRECOPY_INFOv2");
        return true;
    }

    /// <inheritdoc/>
    /// <remarks>Identity from sysfs: PCI ids (PCI devices), the mdev type (mdevs), the driver and its module version.</remarks>
    public ValueTask<Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default)
    {
        var regions = Device.GetRegions().Select(r => new Compat.RegionProfile(r.Index, r.Size, r.Flags)).ToList();
        return Compat.MigrationProfiles.ReadAsync(this, VfioSysfs.Identity(Device.Entry), regions, null, cancellationToken);
    }

    /// <inheritdoc/>
    public ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(TryEnablePrecopyInfoV2());
    }

    /// <summary>What <c>vfio-mig info</c> prints: sysfs facts, device and region info, migration caps and state.</summary>
    public KernelDeviceReport Describe()
    {
        var info = Device.GetInfo();
        var regions = Device.GetRegions();
        VfioMigrationFlags? caps = null;
        VfioMigrationState? state = null;
        string? migrationError = null;
        try
        {
            if (ProbeMigration())
            {
                caps = GetCapabilities();
                state = GetState();
            }
            else
            {
                migrationError = "no migration support (PROBE MIGRATION: ENOTTY)";
            }
        }
        catch (VfioException e)
        {
            migrationError = e.Message;
        }
        return new KernelDeviceReport(Device.Entry, Device.IommuType, info, regions, caps, state, migrationError);
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        if (_ownsDevice)
            Device.Dispose();
        return ValueTask.CompletedTask;
    }

    private static string? ExplainLogging(Errno errno) => errno == Errno.ENOTTY ? "the device has no DMA logging (dirty tracking)" : null;

    private static void Check(int rc, string operation, Func<Errno, string?>? explain = null)
    {
        if (rc < 0)
            Interop.Interop.ThrowIo((Errno)(-rc), operation, explain);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowSetFailed(Errno errno, VfioMigrationState target, string operation)
    {
        // Spec §3.2: the SET write-back echoes the request, so only a GET tells where the device is now.
        string now;
        try
        {
            now = "the device is now in " + MigrationStateMachine.Name(GetState());
        }
        catch (VfioException e)
        {
            now = "reading the state back failed too (" + e.Message + ")";
        }
        string? why = errno switch
        {
            Errno.EINVAL => $"the kernel rejected the request or the driver refused an arc toward {MigrationStateMachine.Name(target)}",
            Errno.EMFILE or Errno.ENFILE => "the transition completed but no descriptor was free for the new data fd, which is lost",
            Errno.ENOTTY => "the device does not support migration",
            _ => null,
        };
        Interop.Interop.ThrowIo(errno, operation, _ => why is null ? now : $"{why}; {now}");
    }
}
