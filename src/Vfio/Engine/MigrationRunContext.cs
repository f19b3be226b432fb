using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// What one half of a running migration shares with all its parts: options, the devices as the engine sees
/// them (wrapped by the trace), the clock, the current phase, progress, the record in the store, warnings and
/// the per-side statistics frame. The source's and destination's run objects, their per-device objects and the
/// source's return path all work through it.
/// </summary>
internal sealed class MigrationRunContext
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly IProgress<MigrationProgress>? _progress;
    private TimeSpan? _lastProgress; // null until the first snapshot

    public MigrationRunContext(MigrationSide side, IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, IProgress<MigrationProgress>? progress, ILogger log)
    {
        Side = side;
        Options = options;
        _progress = progress;
        Log = log;
        Trace = new MigrationTrace(options, side, devices);
        Devices = Trace.Devices;
        Store = options.DecisionStore ?? new InMemoryMigrationStore();
        Recorder = new SideRecorder(Store, side, devices, log, Warnings, Trace);
    }

    public MigrationSide Side { get; }

    public MigrationOptions Options { get; }

    public ILogger Log { get; }

    public MigrationTrace Trace { get; }

    /// <summary>The caller's devices as the engine sees them (traced wrappers; <see cref="MigrationTrace.Unwrap"/> for optional interfaces).</summary>
    public IReadOnlyList<IVfioMigrationDevice> Devices { get; }

    public int Count => Devices.Count;

    public IMigrationDecisionStore Store { get; }

    public SideRecorder Recorder { get; }

    /// <summary>Problems that did not fail the migration; they end up in the statistics.</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>The migration's id (empty on the destination until the Begin frame named it).</summary>
    public Guid Id
    {
        get => Recorder.Id;
        set => Recorder.Id = value;
    }

    public MigrationPhase Phase { get; private set; } = MigrationPhase.Setup;

    /// <summary>Time since this half started.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    public bool ReportsProgress => _progress is not null;

    /// <summary>When setup ended (the destination ready on the source; the devices in RESUMING on the destination).</summary>
    public TimeSpan SetupTime { get; private set; }

    /// <summary>When the switchover began (the source wrote, the destination read, the Switchover frame); null before.</summary>
    public TimeSpan? SwitchoverAt { get; private set; }

    /// <summary>Time since the switchover began (0 before it).</summary>
    public TimeSpan SinceSwitchover => SwitchoverAt is { } at ? Elapsed - at : TimeSpan.Zero;

    public void SetupDone() => SetupTime = Elapsed;

    public void SwitchoverBegins() => SwitchoverAt = Elapsed;

    /// <summary>The checks both public constructors make on the device list.</summary>
    public static void CheckDeviceCount(IReadOnlyList<IVfioMigrationDevice> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        if (devices.Count == 0 || devices.Count >= MigrationFrame.StreamLevel)
            throw new ArgumentException($"between 1 and {MigrationFrame.StreamLevel - 1} devices are needed", nameof(devices));
    }

    public void Enter(MigrationPhase phase)
    {
        Phase = phase;
        EngineLog.PhaseEntered(Log, Side, phase);
        Trace.Phase(phase);
    }

    /// <summary>
    /// True when a progress snapshot is due now: always with a message or when forced, else at most once per
    /// <see cref="MigrationOptions.ProgressInterval"/>. A caller that gets true builds the snapshot and hands it to <see cref="Publish"/>.
    /// </summary>
    public bool ProgressDue(string? message, bool force)
    {
        if (_progress is null)
            return false;
        var now = _clock.Elapsed;
        if (!force && message is null && now - _lastProgress < Options.ProgressInterval)
            return false;
        _lastProgress = now;
        return true;
    }

    /// <summary>Reports <paramref name="figures"/> with this half's side, phase and elapsed time filled in.</summary>
    public void Publish(MigrationProgress figures, string? message)
        => _progress?.Report(figures with { Side = Side, Phase = Phase, Elapsed = _lastProgress ?? Elapsed, Message = message });

    public MigrationException Fail(int device, Errno errno, string detail, Exception? inner = null)
        => new(Side, Phase, device, device >= 0 ? Devices[device].Name : null, errno, detail, inner);

    /// <summary>Calls device <paramref name="device"/>; its failure becomes a <see cref="MigrationException"/> naming the operation.</summary>
    public async Task<T> DeviceAsync<T>(int device, string operation, Func<IVfioMigrationDevice, ValueTask<T>> call)
    {
        try
        {
            return await call(Devices[device]).ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            throw Fail(device, ex.Errno, $"{operation}: {ex.Detail ?? ex.Message}", ex);
        }
    }

    public ValueTask WriteRecordAsync(MigrationRecordStatus status, string detail, CancellationToken token) => Recorder.WriteAsync(status, detail, token);

    public Task WriteRecordQuietlyAsync(MigrationRecordStatus status, string detail) => Recorder.WriteQuietlyAsync(status, detail);

    public ValueTask CheckpointAsync(MigrationCheckpoint point, CancellationToken token) => SideRecorder.CheckpointAsync(Options, point, token);

    /// <summary>The figures every side reports the same way; each half adds its own with <c>with</c>.</summary>
    public MigrationStatistics Statistics(IEnumerable<EngineDevice> devices)
    {
        var perDevice = devices.Select(d => d.Statistics()).ToArray();
        return new MigrationStatistics
        {
            MigrationId = Id,
            Side = Side,
            DeviceCount = Count,
            PreCopyBytes = perDevice.Sum(d => d.PreCopyBytes),
            StopCopyBytes = perDevice.Sum(d => d.StopCopyBytes),
            SetupTime = SetupTime,
            PreCopyTime = SwitchoverAt is { } at ? at - SetupTime : TimeSpan.Zero,
            TotalTime = Elapsed,
            Devices = perDevice,
            Warnings = Warnings.ToArray(),
        };
    }

    /// <summary>A failure leaves with what recovery could not do, the figures so far and the migration's id.</summary>
    public MigrationException Settle(MigrationException failure, IReadOnlyList<string> recovery, MigrationStatistics statistics)
    {
        failure.RecoveryErrors = recovery;
        failure.Statistics = statistics;
        failure.MigrationId = Id;
        return failure;
    }

    /// <summary>The outcome is success: trace and log it.</summary>
    public MigrationStatistics Completed(MigrationStatistics statistics)
    {
        Trace.Completed(statistics);
        EngineLog.Completed(Log, Side, statistics.TotalBytes, statistics.Downtime.TotalMilliseconds, statistics.TotalTime.TotalMilliseconds);
        return statistics;
    }

    /// <summary>Recovery problems go to the log one by one and to the trace as one line.</summary>
    public void Recovered(string action, IReadOnlyList<string> problems, string success)
    {
        Trace.Recovery(action, problems.Count == 0 ? success : string.Join("; ", problems));
        foreach (var problem in problems)
            EngineLog.RecoveryProblem(Log, Side, problem);
    }
}
