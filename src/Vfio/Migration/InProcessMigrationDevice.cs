using Vfio.Device;
using Vfio.Uapi;

namespace Vfio.Migration;

/// <summary>The in-process transport: the user-side interface directly over a device-side engine.</summary>
public sealed class InProcessMigrationDevice : IVfioMigrationDevice, IDeviceDigestSource, Conformance.IConformanceHints
{
    private readonly bool _ownsDevice;

    /// <summary>Wraps <paramref name="device"/>; disposes it with this adapter when <paramref name="ownsDevice"/>.</summary>
    public InProcessMigrationDevice(MigrationDevice device, string name, bool ownsDevice = false)
    {
        Device = device ?? throw new ArgumentNullException(nameof(device));
        Name = name;
        _ownsDevice = ownsDevice;
    }

    /// <summary>The device-side engine behind this adapter.</summary>
    public MigrationDevice Device { get; }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default)
        => ValueTask.FromResult(Device.Capabilities);

    /// <inheritdoc/>
    public ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default)
        => ValueTask.FromResult(Device.State);

    /// <inheritdoc/>
    public ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var session = Device.SetState(target);
        return ValueTask.FromResult<IMigrationDataStream?>(session is null ? null : new SessionStream(session));
    }

    // Read-back: the sample's state is its BAR0 (what vfio-mig serve exposes), hashed under its own lock; other
    // in-process devices offer none.
    string IDeviceDigestSource.DigestKind => DeviceDigests.Bar0Kind;

    string IDeviceDigestSource.ReadBackName => "BAR0";

    bool IDeviceDigestSource.ReadsLocally => true;

    ValueTask<ulong?> IDeviceDigestSource.GetReadBackSizeAsync(CancellationToken cancellationToken)
        => ValueTask.FromResult(Device is Sample.SampleDevice sample ? (ulong?)sample.SizeBytes : null);

    ValueTask<byte[]> IDeviceDigestSource.ComputeSha256Async(ulong size, CancellationToken cancellationToken)
        => Device is Sample.SampleDevice sample
            ? ValueTask.FromResult(sample.ComputeSha256())
            : throw new VfioException(Errno.EOPNOTSUPP, "read back " + Name, "an in-process device other than the sample offers no read-back");

    // Check hints come from the device-side engine when it has them (the sample device).
    bool Conformance.IConformanceHints.DeterministicStreams => Device is Conformance.IConformanceHints { DeterministicStreams: true };

    bool Conformance.IConformanceHints.CanGenerateDeviceWrites => Device is Conformance.IConformanceHints { CanGenerateDeviceWrites: true };

    ValueTask Conformance.IConformanceHints.GenerateDeviceWritesAsync(CancellationToken cancellationToken)
        => Device is Conformance.IConformanceHints hints
            ? hints.GenerateDeviceWritesAsync(cancellationToken)
            : throw new VfioException(Errno.EOPNOTSUPP, "generate device writes on " + Name, "the device cannot be written as a guest would");

    /// <inheritdoc/>
    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default)
        => ValueTask.FromResult(Device.GetStopCopySize());

    /// <inheritdoc/>
    public ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        Device.Reset();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default)
        => Compat.MigrationProfiles.ReadAsync(this, new Compat.DeviceIdentity { Transport = "in-process", Model = Device.GetType().Name }, [], Device.Format, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default)
    {
        if ((Device.Capabilities & VfioMigrationFlags.PreCopy) == 0)
            return ValueTask.FromResult(false);
        Device.EnablePrecopyInfoV2();
        return ValueTask.FromResult(true);
    }

    /// <inheritdoc/>
    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(Device.StartDmaLogging(pageSize, ranges));

    /// <inheritdoc/>
    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default)
    {
        Device.StopDmaLogging();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
    {
        Device.ReportDmaLogging(iova, length, pageSize, bitmap.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        if (_ownsDevice)
            Device.Dispose();
        return ValueTask.CompletedTask;
    }

    private sealed class SessionStream(DataSession session) : IMigrationDataStream
    {
        public DataSessionKind Kind => session.Kind;

        public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(session.Read(buffer.Span));
        }

        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            session.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default)
            => ValueTask.FromResult(session.GetPrecopyInfo());

        // Closing the stream changes nothing on the device (spec §4.1).
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
