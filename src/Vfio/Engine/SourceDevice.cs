using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>
/// One source device during a migration: what setup learned (capabilities, stop-copy size, the
/// PRECOPY_INFOv2 opt-in), its saving session and bytes, the initial-data markers sent and the destination's
/// acks for them (the return path counts those on its own task), its REINITs and the destination device's
/// capabilities from its Ready frame.
/// </summary>
internal sealed class SourceDevice(int index, MigrationRunContext run) : EngineDevice(index, run)
{
    private int _markersSent; // InitDataSent frames written (main loop)
    private int _acksReceived; // InitDataAck frames received (return loop)

    /// <summary>The device's estimate of its stop-copy data (MIG_DATA_SIZE) when it answered at setup.</summary>
    public ulong StopCopySize { get; private set; }

    /// <summary>The device answers MIG_DATA_SIZE; without it convergence uses PRECOPY_INFO alone.</summary>
    public bool StopCopySizeKnown { get; private set; }

    /// <summary>The device accepted the MIG_PRECOPY_INFOv2 opt-in: its REINIT is real.</summary>
    public bool PrecopyInfoV2 { get; set; }

    /// <summary>REINITs the device reported.</summary>
    public int Reinits { get; private set; }

    /// <summary>All the current initial data went out and its marker was written (cleared by a REINIT).</summary>
    public bool InitSent { get; private set; }

    /// <summary>The destination device's capabilities (its Ready frame).</summary>
    public VfioMigrationFlags DestinationCaps { get; set; }

    // Acked when the latest marker was acknowledged: acks arrive in order, so after a REINIT an ack of an
    // older marker never counts for the new initial data.
    public override bool InitialDataAcknowledged
        => InitSent && Volatile.Read(ref _acksReceived) >= Volatile.Read(ref _markersSent) && _markersSent > 0;

    /// <summary>Setup's look at the device: it can migrate (STOP_COPY), runs, and maybe knows its stop-copy size.</summary>
    public async Task ProbeAsync(CancellationToken token)
    {
        var caps = await CallAsync("VFIO_DEVICE_FEATURE_MIGRATION", d => d.GetCapabilitiesAsync(token)).ConfigureAwait(false);
        if ((caps & VfioMigrationFlags.StopCopy) == 0)
            throw Fail(Errno.EOPNOTSUPP, $"the device cannot migrate: its capabilities {MigrationStateMachine.FormatCaps(caps)} lack STOP_COPY");
        Caps = caps;
        var state = await CallAsync("GET device_state", d => d.GetStateAsync(token)).ConfigureAwait(false);
        if (state != VfioMigrationState.Running)
            throw Fail(Errno.EBUSY, $"the device is in {MigrationStateMachine.Name(state)}; a source device must be RUNNING");
        try
        {
            StopCopySize = await Device.GetStopCopySizeAsync(token).ConfigureAwait(false);
            StopCopySizeKnown = true;
        }
        catch (VfioException)
        {
            // No MIG_DATA_SIZE (e.g. a vfio-user server): convergence uses PRECOPY_INFO alone.
            StopCopySizeKnown = false;
        }
    }

    /// <summary>The device's stop-copy estimate now, or 0 when it does not give one (a failure stops asking).</summary>
    public async Task<ulong> StopCopySizeNowAsync(CancellationToken token)
    {
        if (!StopCopySizeKnown)
            return 0;
        try
        {
            return await Device.GetStopCopySizeAsync(token).ConfigureAwait(false);
        }
        catch (VfioException)
        {
            StopCopySizeKnown = false;
            return 0;
        }
    }

    /// <summary>The InitDataSent marker is about to be written: the initial data went out.</summary>
    public void MarkInitDataSent()
    {
        InitSent = true;
        Interlocked.Increment(ref _markersSent);
    }

    /// <summary>An InitDataAck arrived (return path). False when no marker is waiting for it: a protocol error.</summary>
    public bool Acknowledge() => Interlocked.Increment(ref _acksReceived) <= Volatile.Read(ref _markersSent);

    /// <summary>A REINIT (spec §4.7) the device may report; true when it takes back an initial data already marked sent.</summary>
    public bool Reinit()
    {
        Reinits++;
        if (!InitSent)
            return false;
        InitSent = false;
        return true;
    }

    /// <summary>A REINIT seen at the switchover's last look (the migration fails; counted for the statistics).</summary>
    public void CountReinit() => Reinits++;

    public override DeviceMigrationStatistics Statistics() => base.Statistics() with { PrecopyInfoV2 = PrecopyInfoV2, Reinits = Reinits };
}
