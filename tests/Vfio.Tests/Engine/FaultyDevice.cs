using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Tests.Engine;

/// <summary>A decorator that makes chosen calls of a device fail with a VfioException, and counts resets.</summary>
internal sealed class FaultyDevice(IVfioMigrationDevice inner, Errno errno = Errno.EIO) : IVfioMigrationDevice
{
    private int _resets;

    public IVfioMigrationDevice Inner { get; } = inner;

    public Errno InjectedErrno { get; } = errno;

    public bool FailCapabilities { get; init; }

    /// <summary>SET to this target fails (the inner device is not asked).</summary>
    public VfioMigrationState? FailSetStateTo { get; init; }

    /// <summary>Reads fail while the device is in this state (after <see cref="ReadsBeforeFailure"/> successful reads in it).</summary>
    public VfioMigrationState? FailReadIn { get; init; }

    public int ReadsBeforeFailure { get; init; }

    /// <summary>Writes fail after this many successful writes (null: never).</summary>
    public int? FailWriteAfter { get; init; }

    /// <summary>SET to this target first waits <see cref="Delay"/> (a slow device).</summary>
    public VfioMigrationState? DelaySetStateTo { get; init; }

    public TimeSpan Delay { get; init; }

    /// <summary>Reports REINIT once, on the second PRECOPY_INFO that finds no initial bytes left.</summary>
    public bool ReinitOnce { get; init; }

    /// <summary>Reports REINIT on every PRECOPY_INFO while the inner device is in PRE_COPY_P2P (the switchover's last check).</summary>
    public bool ReinitInPreCopyP2P { get; init; }

    /// <summary>False: the device does not offer MIG_PRECOPY_INFOv2 (an old kernel); its REINIT flags are echoes.</summary>
    public bool OffersPrecopyInfoV2 { get; init; } = true;

    /// <summary>How often the opt-in was asked for.</summary>
    public int PrecopyInfoV2Requests => Volatile.Read(ref _v2Requests);

    private int _v2Requests;

    public int Resets => Volatile.Read(ref _resets);

    private bool _zeroSeen;
    private bool _reinitDone;

    public string Name => Inner.Name;

    private int _readsInState;
    private int _writes;

    /// <summary>Capabilities claimed instead of the inner device's (e.g. a set the sample device cannot have).</summary>
    public VfioMigrationFlags? ClaimCapabilities { get; init; }

    /// <summary>MIG_DATA_SIZE fails (as on a vfio-user server).</summary>
    public bool FailStopCopySize { get; init; }

    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default)
        => FailCapabilities ? throw new VfioException(InjectedErrno, "VFIO_DEVICE_FEATURE_MIGRATION", "injected failure")
            : ClaimCapabilities is { } claimed ? ValueTask.FromResult(claimed) : Inner.GetCapabilitiesAsync(cancellationToken);

    public ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default) => Inner.GetStateAsync(cancellationToken);

    /// <summary>With <see cref="FailSetStateTo"/>: fail only the first such SET (a device that would not start once).</summary>
    public bool FailOnce { get; init; }

    private int _setFailures;

    public async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        if (target == FailSetStateTo && (!FailOnce || Interlocked.Increment(ref _setFailures) == 1))
            throw new VfioException(InjectedErrno, $"SET device_state {MigrationStateMachine.Name(target)}", "injected failure");
        if (target == DelaySetStateTo)
            await Task.Delay(Delay, CancellationToken.None);
        var stream = await Inner.SetStateAsync(target, cancellationToken);
        return stream is null ? null : new FaultyStream(this, stream);
    }

    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default)
        => FailStopCopySize ? throw new VfioException(Errno.ENOTTY, "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE", "injected failure") : Inner.GetStopCopySizeAsync(cancellationToken);

    public ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _resets);
        return Inner.ResetAsync(cancellationToken);
    }

    public ValueTask<Vfio.Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default) => Inner.GetProfileAsync(cancellationToken);

    public ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _v2Requests);
        return OffersPrecopyInfoV2 ? Inner.TryEnablePrecopyInfoV2Async(cancellationToken) : ValueTask.FromResult(false);
    }

    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
        => Inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => Inner.StopDmaLoggingAsync(cancellationToken);

    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
        => Inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    public ValueTask DisposeAsync() => Inner.DisposeAsync();

    private sealed class FaultyStream(FaultyDevice owner, IMigrationDataStream stream) : IMigrationDataStream
    {
        public DataSessionKind Kind => stream.Kind;

        public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (owner.FailReadIn is { } state && await owner.Inner.GetStateAsync(cancellationToken) == state
                && Interlocked.Increment(ref owner._readsInState) > owner.ReadsBeforeFailure)
                throw new VfioException(owner.InjectedErrno, "read migration data", "injected failure");
            return await stream.ReadAsync(buffer, cancellationToken);
        }

        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (owner.FailWriteAfter is { } n && Interlocked.Increment(ref owner._writes) > n)
                throw new VfioException(owner.InjectedErrno, "write migration data", "injected failure");
            return stream.WriteAsync(buffer, cancellationToken);
        }

        public async ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default)
        {
            var estimate = await stream.GetPrecopyInfoAsync(cancellationToken);
            if (owner.ReinitInPreCopyP2P && await owner.Inner.GetStateAsync(cancellationToken) == VfioMigrationState.PreCopyP2P)
                return estimate with { Reinit = true };
            if (owner.ReinitOnce && estimate.InitialBytes == 0 && !owner._reinitDone)
            {
                if (owner._zeroSeen)
                {
                    owner._reinitDone = true;
                    return estimate with { Reinit = true };
                }
                owner._zeroSeen = true;
            }
            return estimate;
        }

        public ValueTask DisposeAsync() => stream.DisposeAsync();
    }
}
