using Vfio.Conformance;
using Vfio.Device;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Uapi;

namespace Vfio.Tests.Conformance;

// Small in-process sample devices and decorators that break what the sample device cannot break.
internal static class ConformanceTestDevices
{
    public static SampleDevice NewSample(SampleDeviceFaults faults = SampleDeviceFaults.None, ulong caps = 0x7, int seed = 1)
        => new(new SampleDeviceOptions { SizeBytes = 1 << 20, Capabilities = (VfioMigrationFlags)caps, Faults = faults, Seed = seed });

    public static ConformanceOptions Options(SampleDevice sample, string? group = null, bool destructive = true, bool strict = false, IVfioMigrationDevice? peer = null)
        => new()
        {
            Groups = group is null ? null : [group],
            AllowDestructive = destructive,
            Strict = strict,
            Peer = peer,
            DeterministicStreams = true,
            GenerateDeviceWrites = _ =>
            {
                foreach (long page in (long[])[1, 7, 42])
                    sample.WriteState(page * sample.Options.PageSize, [1, 2, 3, 4]);
                return ValueTask.CompletedTask;
            },
        };

    public static async Task<ConformanceReport> CheckAsync(SampleDeviceFaults faults = SampleDeviceFaults.None, ulong caps = 0x7, string? group = null, bool destructive = true, bool strict = false)
    {
        using var sample = NewSample(faults, caps);
        await using var device = new InProcessMigrationDevice(sample, "sample:test");
        return await ConformanceChecker.RunAsync(device, Options(sample, group, destructive, strict), TestContext.Current.CancellationToken);
    }
}

// Delegates everything; subclasses override what they break.
internal class DelegatingDevice(IVfioMigrationDevice inner) : IVfioMigrationDevice
{
    public string Name => inner.Name;

    public virtual ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default) => inner.GetCapabilitiesAsync(cancellationToken);

    public virtual ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default) => inner.GetStateAsync(cancellationToken);

    public virtual ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default) => inner.SetStateAsync(target, cancellationToken);

    public virtual ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default) => inner.GetStopCopySizeAsync(cancellationToken);

    public virtual ValueTask ResetAsync(CancellationToken cancellationToken = default) => inner.ResetAsync(cancellationToken);

    public virtual ValueTask<Vfio.Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default) => inner.GetProfileAsync(cancellationToken);

    public virtual ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default) => inner.TryEnablePrecopyInfoV2Async(cancellationToken);

    public virtual ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
        => inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public virtual ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => inner.StopDmaLoggingAsync(cancellationToken);

    public virtual ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
        => inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

// Reports other capability flags, or none at all (ENOTTY).
internal sealed class CapsDevice(IVfioMigrationDevice inner, VfioMigrationFlags? caps) : DelegatingDevice(inner)
{
    public override ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default)
        => caps is { } c ? ValueTask.FromResult(c) : throw new VfioException(Errno.ENOTTY, "GET MIGRATION", "no migration support");
}

// VFIO_DEVICE_RESET does nothing.
internal sealed class NoResetDevice(IVfioMigrationDevice inner) : DelegatingDevice(inner)
{
    public override ValueTask ResetAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
}

// A transport with raw-message checks (what the vfio-user client will plug in).
internal sealed class ProbingDevice(IVfioMigrationDevice inner, params ConformanceResult[] results) : DelegatingDevice(inner), IRawMessageProbe
{
    public ValueTask<IReadOnlyList<ConformanceResult>> RunRawMessageChecksAsync(CancellationToken cancellationToken = default)
        => ValueTask.FromResult<IReadOnlyList<ConformanceResult>>(results);
}

// Hides the in-process engine, so no arc trace is available (like a remote transport).
internal sealed class OpaqueDevice(IVfioMigrationDevice inner) : DelegatingDevice(inner);


// Refuses VFIO_DEVICE_RESET outside RUNNING, as libvfio-user does in STOP/STOP_COPY (spec §11).
internal sealed class ResetRefusingDevice(IVfioMigrationDevice inner) : DelegatingDevice(inner)
{
    public override async ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        if (await GetStateAsync(cancellationToken) is VfioMigrationState.Stop or VfioMigrationState.StopCopy)
            throw new VfioException(Errno.EINVAL, "DeviceReset", "reset refused in this state");
        await base.ResetAsync(cancellationToken);
    }
}

// Refuses every data read larger than it likes (EINVAL), as a device with a fixed record size might.
internal sealed class ReadSizeDevice(IVfioMigrationDevice inner, int largest) : DelegatingDevice(inner)
{
    public override async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
        => await base.SetStateAsync(target, cancellationToken) is { } stream ? new Stream(stream, largest) : null;

    private sealed class Stream(IMigrationDataStream inner, int largest) : IMigrationDataStream
    {
        public Vfio.Device.DataSessionKind Kind => inner.Kind;

        public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => buffer.Length > largest
                ? throw new VfioException(Errno.EINVAL, "read migration data", $"{buffer.Length}-byte reads are not supported")
                : inner.ReadAsync(buffer, cancellationToken);

        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

        public ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default) => inner.GetPrecopyInfoAsync(cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}

// The connection drops at the first DMA_LOGGING_START: from then on every request fails with ECONNRESET.
internal sealed class DyingDevice(IVfioMigrationDevice inner) : DelegatingDevice(inner)
{
    private bool _dead;

    public override ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default) => _dead ? throw Lost() : base.GetStateAsync(cancellationToken);

    public override ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default) => _dead ? throw Lost() : base.SetStateAsync(target, cancellationToken);

    public override ValueTask ResetAsync(CancellationToken cancellationToken = default) => _dead ? throw Lost() : base.ResetAsync(cancellationToken);

    public override ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
    {
        _dead = true;
        throw Lost();
    }

    public override ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => _dead ? throw Lost() : base.StopDmaLoggingAsync(cancellationToken);

    public override ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
        => _dead ? throw Lost() : base.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    private static VfioException Lost() => new(Errno.ECONNRESET, "sample:dying", "the server closed the connection");
}
