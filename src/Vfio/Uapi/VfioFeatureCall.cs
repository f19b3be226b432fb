using Vfio.Migration;

namespace Vfio.Uapi;

/// <summary>
/// Builds complete VFIO_DEVICE_FEATURE call buffers (header + payload) exactly as spec §1.8 lists them.
/// The kernel backend passes these to the ioctl; vfio-user carries the same bytes in DEVICE_FEATURE.
/// </summary>
internal static class VfioFeatureCall
{
    /// <summary>A call buffer with the given flags and payload size; argsz = 8 + payload.</summary>
    public static byte[] Create(VfioDeviceFeatureId feature, VfioDeviceFeatureFlags operations, int payloadSize)
    {
        var buffer = new byte[VfioDeviceFeature.Size + payloadSize];
        new VfioDeviceFeature((uint)buffer.Length, (uint)feature | (uint)operations).Encode(buffer);
        return buffer;
    }

    /// <summary>PROBE|MIGRATION: does the device support migration at all.</summary>
    public static byte[] ProbeMigration() => Create(VfioDeviceFeatureId.Migration, VfioDeviceFeatureFlags.Probe, 0);

    /// <summary>GET|MIGRATION: read the capability flags.</summary>
    public static byte[] GetMigration() => Create(VfioDeviceFeatureId.Migration, VfioDeviceFeatureFlags.Get, VfioDeviceFeatureMigration.Size);

    /// <summary>GET|MIG_DEVICE_STATE: read the state (payload sent as zeros, ignored by the kernel).</summary>
    public static byte[] GetState() => Create(VfioDeviceFeatureId.MigDeviceState, VfioDeviceFeatureFlags.Get, VfioDeviceFeatureMigState.Size);

    /// <summary>SET|MIG_DEVICE_STATE with data_fd = −1.</summary>
    public static byte[] SetState(VfioMigrationState state)
    {
        var buffer = Create(VfioDeviceFeatureId.MigDeviceState, VfioDeviceFeatureFlags.Set, VfioDeviceFeatureMigState.Size);
        new VfioDeviceFeatureMigState((uint)state, -1).Encode(buffer.AsSpan(VfioDeviceFeature.Size));
        return buffer;
    }

    /// <summary>GET|MIG_DATA_SIZE: the stop-copy size estimate.</summary>
    public static byte[] GetMigDataSize() => Create(VfioDeviceFeatureId.MigDataSize, VfioDeviceFeatureFlags.Get, VfioDeviceFeatureMigDataSize.Size);

    /// <summary>SET|MIG_PRECOPY_INFOv2: opt in to REINIT reporting (no payload).</summary>
    public static byte[] OptInPrecopyInfoV2() => Create(VfioDeviceFeatureId.MigPrecopyInfoV2, VfioDeviceFeatureFlags.Set, 0);

    /// <summary>SET|DMA_LOGGING_START with a control struct whose <c>ranges</c> field is the given pointer value.</summary>
    public static byte[] DmaLoggingStart(ulong pageSize, uint numRanges, ulong rangesPointer)
    {
        var buffer = Create(VfioDeviceFeatureId.DmaLoggingStart, VfioDeviceFeatureFlags.Set, VfioDmaLoggingControl.Size);
        new VfioDmaLoggingControl(pageSize, numRanges, 0, rangesPointer).Encode(buffer.AsSpan(VfioDeviceFeature.Size));
        return buffer;
    }

    /// <summary>SET|DMA_LOGGING_STOP (no payload).</summary>
    public static byte[] DmaLoggingStop() => Create(VfioDeviceFeatureId.DmaLoggingStop, VfioDeviceFeatureFlags.Set, 0);

    /// <summary>GET|DMA_LOGGING_REPORT with a report struct whose <c>bitmap</c> field is the given pointer value.</summary>
    public static byte[] DmaLoggingReport(ulong iova, ulong length, ulong pageSize, ulong bitmapPointer)
    {
        var buffer = Create(VfioDeviceFeatureId.DmaLoggingReport, VfioDeviceFeatureFlags.Get, VfioDmaLoggingReport.Size);
        new VfioDmaLoggingReport(iova, length, pageSize, bitmapPointer).Encode(buffer.AsSpan(VfioDeviceFeature.Size));
        return buffer;
    }
}
