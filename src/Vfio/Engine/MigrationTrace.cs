using System.Diagnostics;
using Vfio.Device;
using Vfio.Diagnostics;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// The one object each half of a migration reports to: it writes the flight record
/// (<see cref="MigrationOptions.FlightRecorder"/>), feeds the metrics and opens the activities of
/// <see cref="MigrationTelemetry"/>. The engine calls it at its phase changes, rounds, switchover, frames, faults
/// and outcome; device calls are seen through <see cref="Devices"/>, which wrap the caller's devices. Never throws.
/// </summary>
internal sealed class MigrationTrace
{
    private readonly FlightRecorder? _recorder;
    private readonly MigrationSide _side;
    private readonly KeyValuePair<string, object?> _sideTag;
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly Lock _lock = new();
    private readonly Dictionary<(bool Out, MigrationFrameType Type, ushort Device), FrameRun> _runs = [];
    private readonly Activity? _root;
    private Activity? _phaseActivity;
    private MigrationPhase _phase = MigrationPhase.Setup;
    private bool _phaseEntered;
    private bool _failed;
    private int _ended;

    public MigrationTrace(MigrationOptions options, MigrationSide side, IReadOnlyList<IVfioMigrationDevice> devices)
    {
        _recorder = options.FlightRecorder;
        _side = side;
        SideName = side == MigrationSide.Source ? "source" : "destination";
        _sideTag = new(MigrationTelemetry.SideTag, SideName);
        var traced = new IVfioMigrationDevice[devices.Count];
        for (int i = 0; i < devices.Count; i++)
        {
            traced[i] = new TracedMigrationDevice(devices[i], i, this);
            Add(new FlightEvent { Ev = "device", Dev = i, Name = devices[i].Name });
        }
        Devices = traced;
        MigrationTelemetry.Active.Add(1, _sideTag);
        _root = StartActivity("vfio.migration " + SideName, default);
        _root?.SetTag(MigrationTelemetry.SideTag, SideName);
        _root?.SetTag("vfio.migration.devices", devices.Count);
        Phase(MigrationPhase.Setup);
    }

    /// <summary>The caller's devices, each wrapped so its SET calls, resets and data sessions are traced.</summary>
    public IReadOnlyList<IVfioMigrationDevice> Devices { get; }

    public string SideName { get; }

    /// <summary>The device a traced wrapper stands for (optional interfaces live on it); others unchanged.</summary>
    public static IVfioMigrationDevice Unwrap(IVfioMigrationDevice device) => device is TracedMigrationDevice t ? t.Inner : device;

    public double NowMs => _recorder?.NowMs ?? Stopwatch.GetElapsedTime(_start).TotalMilliseconds;

    public void Begin(Guid id)
    {
        _root?.SetTag("vfio.migration.id", id.ToString("D"));
        Add(new FlightEvent { Ev = "begin", MigrationId = id.ToString("D") });
    }

    public void Phase(MigrationPhase phase)
    {
        if (phase == _phase && _phaseEntered)
            return;
        _phaseEntered = true;
        _phase = phase;
        FlushFrames();
        Add(new FlightEvent { Ev = "phase", Phase = PhaseName(phase) });
        _phaseActivity?.Dispose();
        _phaseActivity = _root is null ? null : StartActivity("vfio.migration.phase " + PhaseName(phase), _root.Context);
        _phaseActivity?.SetTag(MigrationTelemetry.PhaseTag, PhaseName(phase));
    }

    public void Arc(int device, VfioMigrationState? from, VfioMigrationState to, double startMs, Errno? errno)
    {
        double duration = NowMs - startMs;
        string target = MigrationStateMachine.Name(to);
        var tags = new TagList { _sideTag, { MigrationTelemetry.TargetStateTag, target } };
        if (errno is { } e)
            tags.Add(MigrationTelemetry.ErrorTypeTag, VfioException.NameOf(e));
        MigrationTelemetry.SetStateDuration.Record(duration / 1000, tags);
        _phaseActivity?.AddEvent(new ActivityEvent("set_state", tags: new ActivityTagsCollection
        {
            ["vfio.device.index"] = device,
            [MigrationTelemetry.TargetStateTag] = target,
            [MigrationTelemetry.ErrorTypeTag] = errno is { } n ? VfioException.NameOf(n) : null,
        }));
        AddAt(startMs, new FlightEvent
        {
            Ev = "arc",
            Dev = device,
            From = from is { } f ? MigrationStateMachine.Name(f) : null,
            To = target,
            DurMs = Math.Round(duration, 3),
            Errno = errno is { } x ? VfioException.NameOf(x) : null,
        });
    }

    public void Reset(int device, double startMs, Errno? errno)
        => AddAt(startMs, new FlightEvent { Ev = "reset", Dev = device, DurMs = Math.Round(NowMs - startMs, 3), Errno = errno is { } e ? VfioException.NameOf(e) : null });

    public void SessionOpened(int device, DataSessionKind kind)
        => Add(new FlightEvent { Ev = "session_open", Dev = device, Name = kind == DataSessionKind.Saving ? "saving" : "resuming" });

    public void SessionClosed(int device, DataSessionKind kind, long bytes, double openedMs)
        => Add(new FlightEvent { Ev = "session_close", Dev = device, Name = kind == DataSessionKind.Saving ? "saving" : "resuming", Bytes = bytes, DurMs = Math.Round(NowMs - openedMs, 3) });

    public void PrecopyInfo(int device, PrecopyEstimate info)
        => Add(new FlightEvent { Ev = "precopy_info", Dev = device, InitialBytes = info.InitialBytes, DirtyBytes = info.DirtyBytes, Reinit = info.Reinit ? true : null });

    public void Round(int round, long bytes, long pending, long threshold, double bandwidth, int acks)
    {
        MigrationTelemetry.Rounds.Add(1, _sideTag);
        FlushFrames();
        Add(new FlightEvent { Ev = "round", Round = round, Bytes = bytes, PendingBytes = pending, ThresholdBytes = threshold, BandwidthBps = Math.Round(bandwidth), Acks = acks });
    }

    /// <summary>The switchover decision and its inputs (docs/engine.md, "Convergence").</summary>
    public void Switchover(int rounds, long pending, long threshold, double bandwidth, bool forced, ConvergenceModel model)
    {
        var predicted = model.EstimateDowntime(pending);
        Add(new FlightEvent
        {
            Ev = "switchover",
            Round = rounds,
            PendingBytes = pending,
            ThresholdBytes = threshold,
            BandwidthBps = Math.Round(bandwidth),
            PredictedDowntimeMs = predicted is { } p ? Math.Round(p.TotalMilliseconds, 3) : null,
            FixedCostMs = Math.Round(model.FixedCost.TotalMilliseconds, 3),
            LimitMs = model.DowntimeLimit.TotalMilliseconds,
            Forced = forced ? true : null,
        });
    }

    /// <summary>A migration-stream frame written (<paramref name="written"/>) or read. Data frames are summed into runs.</summary>
    public void Frame(bool written, MigrationFrameType type, ushort device, int length)
    {
        if (type is MigrationFrameType.PreCopyData or MigrationFrameType.StopCopyData)
        {
            MigrationTelemetry.Bytes.Add(length, _sideTag, new(MigrationTelemetry.PhaseTag, type == MigrationFrameType.PreCopyData ? "pre_copy" : "stop_copy"));
            if (_recorder is null)
                return;
            double now = NowMs;
            lock (_lock)
            {
                var key = (written, type, device);
                if (!_runs.TryGetValue(key, out var run))
                    _runs[key] = run = new FrameRun { FirstMs = now };
                run.LastMs = now;
                run.Count++;
                run.Bytes += length;
            }
            return;
        }
        if (_recorder is null)
            return;
        FlushFrames();
        Add(new FlightEvent { Ev = "frame", Dir = written ? "out" : "in", Name = FrameName(type), Dev = device == MigrationFrame.StreamLevel ? null : device, Bytes = length });
    }

    public void Fault(Exception failure)
    {
        var (errno, detail) = failure switch
        {
            // The errno and phase have fields of their own; the words say who saw it when it was the peer.
            MigrationException m => (m.Errno, m.Side == _side ? m.Detail ?? m.Message : $"reported by the {(m.Side == MigrationSide.Source ? "source" : "destination")}: {m.Detail ?? m.Message}"),
            VfioException v => (v.Errno, v.Message),
            OperationCanceledException => (Errno.ECANCELED, "canceled"),
            _ => (Errno.EIO, failure.Message),
        };
        int? device = failure is MigrationException { DeviceIndex: >= 0 } me && me.Side == _side ? me.DeviceIndex : null;
        if (!_failed)
        {
            _failed = true;
            MigrationTelemetry.Failures.Add(1, _sideTag, new(MigrationTelemetry.PhaseTag, PhaseName(_phase)), new(MigrationTelemetry.ErrorTypeTag, VfioException.NameOf(errno)));
            _root?.SetStatus(ActivityStatusCode.Error, VfioException.NameOf(errno));
            _root?.SetTag(MigrationTelemetry.ErrorTypeTag, VfioException.NameOf(errno));
        }
        FlushFrames();
        Add(new FlightEvent { Ev = "fault", Dev = device, Phase = PhaseName(_phase), Errno = VfioException.NameOf(errno), Detail = detail });
    }

    /// <summary>A device reported REINIT: its new initial data needs a new switchover-ack.</summary>
    public void Reinit(int device, ulong initialBytes) => Add(new FlightEvent { Ev = "reinit", Dev = device, InitialBytes = initialBytes });

    /// <summary>The result of the PRECOPY_INFOv2 opt-in for a device.</summary>
    public void PrecopyInfoV2(int device, bool enabled) => Add(new FlightEvent { Ev = "precopy_info_v2", Dev = device, Detail = enabled ? "enabled" : "not offered" });

    /// <summary>The destination's compatibility check of the source's profile, with every reason for a refusal.</summary>
    public void Compatibility(bool compatible, IReadOnlyList<string> reasons)
        => Add(new FlightEvent { Ev = "compat", Outcome = compatible ? "compatible" : "incompatible", Count = reasons.Count, Detail = reasons.Count == 0 ? null : string.Join("; ", reasons) });

    public void Recovery(string action, string detail) => Add(new FlightEvent { Ev = "recovery", Name = action, Detail = detail });

    /// <summary>The side's record in the store changed (begun, completed, aborted, held).</summary>
    public void Record(MigrationRecordStatus status, string detail)
    {
        if (status == MigrationRecordStatus.Begun)
            return;
        string outcome = status.ToString().ToLowerInvariant();
        _root?.SetTag(MigrationTelemetry.OutcomeTag, outcome);
        Add(new FlightEvent { Ev = "outcome", Outcome = outcome, Detail = detail });
    }

    public void Completed(MigrationStatistics statistics)
    {
        if (_side == MigrationSide.Source && statistics.Downtime > TimeSpan.Zero)
            MigrationTelemetry.Downtime.Record(statistics.Downtime.TotalSeconds, _sideTag);
        Add(new FlightEvent
        {
            Ev = "statistics",
            Bytes = statistics.TotalBytes,
            Round = statistics.Rounds,
            DowntimeMs = statistics.Downtime > TimeSpan.Zero ? Math.Round(statistics.Downtime.TotalMilliseconds, 3) : null,
            PendingBytes = _side == MigrationSide.Source ? statistics.PendingBytesAtSwitchover : null,
            Detail = statistics.Warnings.Count > 0 ? string.Join("; ", statistics.Warnings) : null,
        });
    }

    /// <summary>The side's run is over (called once from its finally; later calls do nothing).</summary>
    public void End()
    {
        if (Interlocked.Exchange(ref _ended, 1) != 0)
            return;
        FlushFrames();
        var outcome = _root?.GetTagItem(MigrationTelemetry.OutcomeTag) as string ?? (_failed ? "aborted" : "completed");
        MigrationTelemetry.Duration.Record(Stopwatch.GetElapsedTime(_start).TotalSeconds, _sideTag, new(MigrationTelemetry.OutcomeTag, outcome));
        MigrationTelemetry.Active.Add(-1, _sideTag);
        Add(new FlightEvent { Ev = "end" });
        _phaseActivity?.Dispose();
        _root?.Dispose();
        _recorder?.Flush();
    }

    public static string PhaseName(MigrationPhase phase) => phase switch
    {
        MigrationPhase.Setup => "setup",
        MigrationPhase.PreCopy => "pre_copy",
        MigrationPhase.Switchover => "switchover",
        MigrationPhase.StopCopy => "stop_copy",
        MigrationPhase.Validate => "validate",
        MigrationPhase.Start => "start",
        MigrationPhase.Cleanup => "cleanup",
        MigrationPhase.Completed => "completed",
        _ => "phase_" + (byte)phase,
    };

    private static string FrameName(MigrationFrameType type)
        => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(type.ToString());

    private void Add(FlightEvent e) => _recorder?.Add(e with { Side = SideName });

    private void AddAt(double ms, FlightEvent e) => _recorder?.AddStamped(e with { Side = SideName, TMs = Math.Round(ms, 3) });

    // Runs of data frames become one "frames" event each, before the next event that is not a data frame.
    private void FlushFrames()
    {
        if (_recorder is null)
            return;
        List<FlightEvent>? flushed = null;
        lock (_lock)
        {
            foreach (var ((written, type, device), run) in _runs)
            {
                (flushed ??= []).Add(new FlightEvent
                {
                    TMs = Math.Round(run.FirstMs, 3),
                    Ev = "frames",
                    Side = SideName,
                    Dir = written ? "out" : "in",
                    Name = FrameName(type),
                    Dev = device,
                    Count = run.Count,
                    Bytes = run.Bytes,
                    DurMs = Math.Round(run.LastMs - run.FirstMs, 3),
                });
            }
            _runs.Clear();
        }
        if (flushed is null)
            return;
        foreach (var e in flushed)
            _recorder.AddStamped(e);
    }

    // Started activities do not become Activity.Current: the engine's async flow must not inherit them by accident.
    private static Activity? StartActivity(string name, ActivityContext parent)
    {
        var previous = Activity.Current;
        var activity = MigrationTelemetry.Activities.StartActivity(name, ActivityKind.Internal, parent);
        Activity.Current = previous;
        return activity;
    }

    private sealed class FrameRun
    {
        public double FirstMs;
        public double LastMs;
        public long Count;
        public long Bytes;
    }
}
