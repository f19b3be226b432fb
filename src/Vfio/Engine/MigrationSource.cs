using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using System.Runtime.ExceptionServices;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// The source half of a live migration: drives N source devices through setup, pre-copy, switchover and
/// stop-copy, writes the forward migration stream and reads the destination's return path. Whatever
/// fails before it sends Commit, the source devices end up RUNNING again (SET RUNNING, else reset) with their
/// state untouched; after Commit only the destination's answer decides, and without one the sources are held
/// (docs/commit-protocol.md).
/// </summary>
/// <remarks>See docs/engine.md for the algorithm and docs/stream-format.md for the bytes.</remarks>
public sealed class MigrationSource
{
    private readonly IReadOnlyList<IVfioMigrationDevice> _devices;
    private readonly MigrationOptions _options;

    /// <summary>Creates the source half for <paramref name="devices"/> (device index = list position).</summary>
    /// <exception cref="ArgumentException">No devices, too many, or invalid options.</exception>
    public MigrationSource(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(devices);
        if (devices.Count == 0 || devices.Count >= MigrationFrame.StreamLevel)
            throw new ArgumentException($"between 1 and {MigrationFrame.StreamLevel - 1} devices are needed", nameof(devices));
        _devices = devices;
        _options = options ?? MigrationOptions.Default;
        _options.Validate();
    }

    /// <summary>
    /// Runs the source half over two pipes: <paramref name="output"/> carries the forward stream,
    /// <paramref name="returnPath"/> the destination's replies. Both are completed when this returns.
    /// </summary>
    /// <returns>The statistics once the destination reported all devices RUNNING and the sources went to STOP.</returns>
    /// <exception cref="MigrationException">The migration failed; the sources are RUNNING again, or, when
    /// <see cref="MigrationException.Held"/> is set, stopped with their state until the migration is resolved.</exception>
    /// <exception cref="OperationCanceledException">Canceled before Commit; the sources are RUNNING again.</exception>
    public async Task<MigrationStatistics> RunAsync(PipeWriter output, PipeReader returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(returnPath);
        var run = new SourceRun(_devices, _options, output, returnPath, progress);
        return await run.ExecuteAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the source half over byte streams (e.g. one <c>NetworkStream</c> for both directions). The streams stay open.</summary>
    /// <inheritdoc cref="RunAsync(PipeWriter, PipeReader, IProgress{MigrationProgress}?, CancellationToken)"/>
    public Task<MigrationStatistics> RunAsync(System.IO.Stream output, System.IO.Stream returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(returnPath);
        return RunAsync(
            StreamPipes.Writer(output),
            StreamPipes.Reader(returnPath),
            progress,
            cancellationToken);
    }

    private sealed class SourceRun
    {
        private readonly IReadOnlyList<IVfioMigrationDevice> _devices;
        private readonly MigrationOptions _options;
        private readonly PipeWriter _output;
        private readonly PipeReader _returnPath;
        private readonly IProgress<MigrationProgress>? _progress;
        private readonly MigrationStreamWriter _writer;
        private readonly int _count;
        private readonly VfioMigrationFlags[] _caps;
        private readonly ulong[] _stopCopySize;
        private readonly bool[] _stopCopySizeKnown;
        private readonly IMigrationDataStream?[] _streams;
        private readonly bool[] _touched;
        private readonly long[] _preCopyBytes;
        private readonly long[] _stopCopyBytes;
        private readonly bool[] _initSent;
        private readonly int[] _markersSent; // InitDataSent frames written per device (main loop)
        private readonly int[] _acksReceived; // InitDataAck frames received per device (return loop)
        private readonly bool[] _precopyInfoV2; // the device accepted the MIG_PRECOPY_INFOv2 opt-in: its REINIT is real
        private readonly int[] _reinits;
        private readonly VfioMigrationFlags[] _destinationCaps;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<ulong> _complete = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Guid _id;
        private readonly SideRecorder _recorder;
        private readonly MigrationTrace _trace;
        private readonly IMigrationDecisionStore _store;
        private int _loadedCount;
        private bool _commitSent; // the point of no return: from here the sources never restart by themselves
        private bool _committedSeen;
        private bool _completeSeen;
        private readonly List<string> _warnings = [];
        private readonly ILogger _log;
        private readonly ConvergenceModel _convergence;
        private CancellationTokenSource? _cts;
        private MigrationException? _remoteFailure; // reported by the destination (Error or failed LoadResult)
        private MigrationException? _returnPathFailure; // the return path itself broke (transport or protocol)
        private int _readyCount;
        private bool _preCopy;
        private bool _p2p;
        private MigrationPhase _phase = MigrationPhase.Setup;
        private int _round;
        private double _bandwidth;
        private long _pending;
        private long _threshold;
        private bool _forced;
        private TimeSpan _setupTime;
        private TimeSpan _preCopyTime;
        private TimeSpan _stopCopyTime;
        private TimeSpan _downtime;
        private TimeSpan _destinationStart;
        private long _downtimeStart;
        private long _roundStart;
        private long _moved;
        private TimeSpan _activeTime;
        private TimeSpan _lastProgress = TimeSpan.MinValue;

        public SourceRun(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, PipeWriter output, PipeReader returnPath, IProgress<MigrationProgress>? progress)
        {
            _trace = new MigrationTrace(options, MigrationSide.Source, devices);
            _devices = _trace.Devices;
            _options = options;
            _output = output;
            _returnPath = returnPath;
            _progress = progress;
            _count = devices.Count;
            _writer = new MigrationStreamWriter(output, MigrationStreamKind.Forward, (ushort)_count, (uint)options.BufferBytes) { OnFrame = (t, d, n) => _trace.Frame(true, t, d, n) };
            _caps = new VfioMigrationFlags[_count];
            _stopCopySize = new ulong[_count];
            _stopCopySizeKnown = new bool[_count];
            _streams = new IMigrationDataStream?[_count];
            _touched = new bool[_count];
            _preCopyBytes = new long[_count];
            _stopCopyBytes = new long[_count];
            _initSent = new bool[_count];
            _markersSent = new int[_count];
            _acksReceived = new int[_count];
            _precopyInfoV2 = new bool[_count];
            _reinits = new int[_count];
            _destinationCaps = new VfioMigrationFlags[_count];
            _log = options.LoggerFactory.CreateLogger<MigrationSource>();
            _convergence = new ConvergenceModel(options.DowntimeLimit, options.BufferBytes);
            _id = options.MigrationId == Guid.Empty ? Guid.NewGuid() : options.MigrationId;
            _store = options.DecisionStore ?? new InMemoryMigrationStore();
            _recorder = new SideRecorder(_store, MigrationSide.Source, devices, _log, _warnings, _trace) { Id = _id };
            _trace.Begin(_id);
        }

        // Acked when the latest marker was acknowledged: acks arrive in order, so after a REINIT an ack of
        // an older marker never counts for the new initial data.
        private bool IsAcked(int i)
            => _initSent[i] && Volatile.Read(ref _acksReceived[i]) >= Volatile.Read(ref _markersSent[i]) && _markersSent[i] > 0;

        private int AckCount
        {
            get
            {
                int n = 0;
                for (int i = 0; i < _count; i++)
                    n += IsAcked(i) ? 1 : 0;
                return n;
            }
        }

        public async Task<MigrationStatistics> ExecuteAsync(CancellationToken cancellationToken)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            // The return path is read until the end, even after the caller cancels: a Complete that is
            // already on its way decides whether the sources may restart.
            using var returnCts = new CancellationTokenSource();
            _cts = cts;
            var token = cts.Token;
            Task? returnLoop = null;
            try
            {
                await WriteRecordAsync(MigrationRecordStatus.Begun, "migrating", token).ConfigureAwait(false);
                await SetupAsync(token).ConfigureAwait(false);
                returnLoop = Task.Run(() => ReturnLoopAsync(returnCts.Token), CancellationToken.None);
                await _ready.Task.WaitAsync(token).ConfigureAwait(false);
                if (_preCopy)
                    await _convergence.MeasureDevicesAsync(_devices, _p2p, token).ConfigureAwait(false);
                CheckDestinationCaps();
                _setupTime = _clock.Elapsed;
                Report("destination ready");

                if (_preCopy)
                    await PreCopyAsync(token).ConfigureAwait(false);
                _preCopyTime = _clock.Elapsed - _setupTime;

                await SwitchoverAsync(token).ConfigureAwait(false);
                await StopCopyAsync(token).ConfigureAwait(false);
                _stopCopyTime = Stopwatch.GetElapsedTime(_downtimeStart);

                Enter(MigrationPhase.Validate);
                Report("waiting for the destination to load and validate");
                try
                {
                    await _loaded.Task.WaitAsync(_options.CommitTimeout, token).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    throw new VfioException(Errno.ETIMEDOUT, "commit", $"the destination did not report its devices loaded within {_options.CommitTimeout.TotalSeconds:0.#} s after the stream ended");
                }

                // Every device is loaded. From this instant the sources never restart by themselves: a Commit
                // written even in part may arrive, and only the destination's answer says whether it did.
                Volatile.Write(ref _commitSent, true);
                await _writer.WriteFrameAsync(MigrationFrameType.Commit, MigrationFrame.StreamLevel, default, token).ConfigureAwait(false);
                Enter(MigrationPhase.Start);
                Report("committed; waiting for the destination to start its devices");
                try
                {
                    await _complete.Task.WaitAsync(_options.CommitTimeout, token).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    throw new VfioException(Errno.ETIMEDOUT, "commit", $"no answer to the Commit within {_options.CommitTimeout.TotalSeconds:0.#} s");
                }
                await CheckpointAsync(MigrationCheckpoint.Started, token).ConfigureAwait(false);
                return await FinishCommittedAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (Volatile.Read(ref _commitSent))
            {
                return await UnknownWindowAsync(ex).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                EngineLog.Failed(_log, MigrationSide.Source, ex);
                _trace.Fault(ex);

                // Tell the destination first (so it does not start), then restart the sources; finding
                // the root cause may wait for the return path.
                await NotifyAbortAsync(ex).ConfigureAwait(false);
                var recovery = await RollbackAsync().ConfigureAwait(false);
                _trace.Recovery("rollback", recovery.Count == 0 ? "source devices RUNNING again" : string.Join("; ", recovery));
                foreach (var problem in recovery)
                    EngineLog.RecoveryProblem(_log, MigrationSide.Source, problem);
                var failure = await ResolveFailureAsync(ex, returnLoop, cancellationToken).ConfigureAwait(false);
                await WriteRecordQuietlyAsync(MigrationRecordStatus.Aborted, recovery.Count == 0 ? "sources running again: " + failure.Message : "recovery failed: " + string.Join("; ", recovery)).ConfigureAwait(false);
                if (failure is MigrationException me)
                {
                    me.RecoveryErrors = recovery;
                    me.Statistics = BuildStatistics();
                    me.MigrationId = _id;
                    ExceptionDispatchInfo.Throw(me);
                }
                if (recovery.Count > 0)
                    throw new MigrationException(MigrationSide.Source, _phase, -1, null, Errno.ECANCELED, "canceled, and recovery failed: " + string.Join("; ", recovery), failure) { RecoveryErrors = recovery };
                ExceptionDispatchInfo.Throw(failure);
                throw;
            }
            finally
            {
                await DisposeStreamsAsync().ConfigureAwait(false);
                await PipeCompletion.CompleteQuietlyAsync(_output).ConfigureAwait(false);
                await cts.CancelAsync().ConfigureAwait(false);
                await returnCts.CancelAsync().ConfigureAwait(false);
                if (returnLoop is not null)
                {
                    try
                    {
                        await returnLoop.ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        // The loop records what it saw; its own end must not replace the outcome.
                    }
                }
                await PipeCompletion.CompleteQuietlyAsync(_returnPath).ConfigureAwait(false);
                _cts = null;
                _trace.End();
            }
        }

        // ---- Setup ----------------------------------------------------------------------------

        private async Task SetupAsync(CancellationToken token)
        {
            Enter(MigrationPhase.Setup);
            for (int i = 0; i < _count; i++)
            {
                var caps = await DeviceAsync(i, "VFIO_DEVICE_FEATURE_MIGRATION", d => d.GetCapabilitiesAsync(token)).ConfigureAwait(false);
                if ((caps & VfioMigrationFlags.StopCopy) == 0)
                    throw Fail(i, Errno.EOPNOTSUPP, $"the device cannot migrate: its capabilities {MigrationStateMachine.FormatCaps(caps)} lack STOP_COPY");
                _caps[i] = caps;
                var state = await DeviceAsync(i, "GET device_state", d => d.GetStateAsync(token)).ConfigureAwait(false);
                if (state != VfioMigrationState.Running)
                    throw Fail(i, Errno.EBUSY, $"the device is in {MigrationStateMachine.Name(state)}; a source device must be RUNNING");
                try
                {
                    _stopCopySize[i] = await _devices[i].GetStopCopySizeAsync(token).ConfigureAwait(false);
                    _stopCopySizeKnown[i] = true;
                }
                catch (VfioException)
                {
                    // No MIG_DATA_SIZE (e.g. a vfio-user server): convergence uses PRECOPY_INFO alone.
                    _stopCopySizeKnown[i] = false;
                }
            }

            var profiles = new Compat.MigrationProfile?[_count];
            if (_options.CheckCompatibility)
            {
                for (int i = 0; i < _count; i++)
                    profiles[i] = await DeviceAsync(i, "read the migration profile", d => d.GetProfileAsync(token)).ConfigureAwait(false);
            }

            bool allPreCopy = _caps.All(c => (c & VfioMigrationFlags.PreCopy) != 0);
            bool allP2P = _caps.All(c => (c & VfioMigrationFlags.P2P) != 0);
            if (_count > 1 && !allP2P)
            {
                int i = Array.FindIndex(_caps, c => (c & VfioMigrationFlags.P2P) == 0);
                throw Fail(i, Errno.EOPNOTSUPP, $"{_count} devices migrate together, but this one lacks P2P (caps {MigrationStateMachine.FormatCaps(_caps[i])}); stopping them one by one could let a running device DMA into a stopped one");
            }
            _preCopy = _options.UsePreCopy && allPreCopy;
            _p2p = allP2P;
            if (_preCopy)
                await EnablePrecopyInfoV2Async(token).ConfigureAwait(false);
            EngineLog.Starting(_log, MigrationSide.Source, _count, _preCopy, _p2p);

            await _writer.WritePreambleAsync(token).ConfigureAwait(false);
            var id = new byte[MigrationFrameCodec.MigrationIdSize];
            MigrationFrameCodec.WriteMigrationId(id, _id);
            await _writer.WriteFrameAsync(MigrationFrameType.Begin, MigrationFrame.StreamLevel, id, token).ConfigureAwait(false);
            var plan = (_preCopy ? MigrationPlanFlags.PreCopy : 0) | (_p2p ? MigrationPlanFlags.P2P : 0);
            for (int i = 0; i < _count; i++)
            {
                var setup = new MigrationDeviceSetup(_caps[i], _stopCopySize[i], plan | (profiles[i] is null ? 0 : MigrationPlanFlags.Profile), _devices[i].Name);
                await _writer.WriteSetupAsync((ushort)i, setup, token).ConfigureAwait(false);
                if (profiles[i] is { } profile)
                    await _writer.WriteFrameAsync(MigrationFrameType.Profile, (ushort)i, EncodeProfile(i, profile), token).ConfigureAwait(false);
            }
        }

        private byte[] EncodeProfile(int i, Compat.MigrationProfile profile)
        {
            try
            {
                return Compat.MigrationProfileJson.Encode(profile);
            }
            catch (VfioException ex)
            {
                throw Fail(i, ex.Errno, ex.Detail ?? ex.Message, ex);
            }
        }

        // Spec §4.7 (vmm-side §1.1 step 3): opt in to precopy-info v2 where the device offers it, so a REINIT flag
        // is the device's word and not an echo. A device that does not offer it migrates as before; any other
        // failure fails the setup, while every source still runs untouched.
        private async Task EnablePrecopyInfoV2Async(CancellationToken token)
        {
            for (int i = 0; i < _count; i++)
                _precopyInfoV2[i] = await DeviceAsync(i, "SET MIG_PRECOPY_INFOv2", d => d.TryEnablePrecopyInfoV2Async(token)).ConfigureAwait(false);
        }

        private void CheckDestinationCaps()
        {
            for (int i = 0; i < _count; i++)
            {
                var d = _destinationCaps[i];
                if (_preCopy && (d & VfioMigrationFlags.PreCopy) == 0)
                    throw Fail(i, Errno.EOPNOTSUPP, $"the source will pre-copy, but destination device {i} lacks PRE_COPY (caps {MigrationStateMachine.FormatCaps(d)})");
                if (_count > 1 && (d & VfioMigrationFlags.P2P) == 0)
                    throw Fail(i, Errno.EOPNOTSUPP, $"destination device {i} lacks P2P (caps {MigrationStateMachine.FormatCaps(d)}), required when several devices migrate together");
            }
        }

        // ---- Pre-copy -------------------------------------------------------------------------

        private async Task PreCopyAsync(CancellationToken token)
        {
            Enter(MigrationPhase.PreCopy);
            for (int i = 0; i < _count; i++)
            {
                _touched[i] = true;
                var stream = await DeviceAsync(i, "SET device_state PRE_COPY", d => d.SetStateAsync(VfioMigrationState.PreCopy, token)).ConfigureAwait(false);
                _streams[i] = stream ?? throw Fail(i, Errno.EPROTO, "RUNNING>PRE_COPY opened no saving stream");
            }
            Report("sources in PRE_COPY");
            await CheckpointAsync(MigrationCheckpoint.PreCopy, token).ConfigureAwait(false);

            var start = _clock.Elapsed;
            while (true)
            {
                _round++;
                long roundBytes = 0;
                _roundStart = Stopwatch.GetTimestamp();
                for (int i = 0; i < _count; i++)
                    roundBytes += await PreCopyDeviceAsync(i, token).ConfigureAwait(false);
                _activeTime += Stopwatch.GetElapsedTime(_roundStart);
                _roundStart = 0;
                _moved += roundBytes;
                UpdateBandwidth(0);

                _pending = await PendingBytesAsync(token).ConfigureAwait(false);
                _convergence.SetTransfer(_moved, _activeTime);
                _threshold = _convergence.ThresholdBytes;
                bool small = _convergence.Decide(_pending) == ConvergenceDecision.SwitchOver;
                EngineLog.Round(_log, _round, roundBytes, _pending, _threshold, _bandwidth, AckCount, _count);
                _trace.Round(_round, roundBytes, _pending, _threshold, _bandwidth, AckCount);
                Report(null, force: true);

                if (small && (!_options.RequireSwitchoverAck || AckCount == _count))
                    return;
                while (small && _options.RequireSwitchoverAck && AckCount < _count)
                {
                    // Converged but a destination has not acknowledged its initial data yet: wait a little, then
                    // run another round (the device kept dirtying while we waited, so the pending figure is stale).
                    if (_clock.Elapsed - start >= _options.MaxPreCopyTime)
                        break;
                    int before = AckCount;
                    for (int waited = 0; waited < 50 && AckCount == before; waited += 2)
                        await Task.Delay(2, token).ConfigureAwait(false);
                    if (AckCount == before)
                        break;
                }

                var elapsed = _clock.Elapsed - start;
                if (_round >= _options.MaxRounds || elapsed >= _options.MaxPreCopyTime)
                {
                    // Out of rounds while they still shrank the stop-copy: within the limit is good enough.
                    if (_convergence.IsWithinLimit(_pending) && (!_options.RequireSwitchoverAck || AckCount == _count))
                        return;
                    var report = _convergence.Report(_round, elapsed, _pending, _count - AckCount);
                    if (_options.NonConvergence == NonConvergencePolicy.ForceSwitchover)
                    {
                        _forced = true;
                        Report("forced switchover: " + report);
                        return;
                    }
                    throw new MigrationException(MigrationSide.Source, MigrationPhase.PreCopy, -1, null, Errno.ETIMEDOUT, report.ToString(), convergence: report);
                }
                if (roundBytes == 0 && _options.IdleRoundDelay > TimeSpan.Zero)
                    await Task.Delay(_options.IdleRoundDelay, token).ConfigureAwait(false);
            }
        }

        // One round for one device: read what PRECOPY_INFO says is there (at least one read), bounded so a
        // device that dirties faster than we read cannot hold the round forever.
        private async Task<long> PreCopyDeviceAsync(int i, CancellationToken token)
        {
            var stream = _streams[i]!;
            var info = await QueryPrecopyAsync(i, token).ConfigureAwait(false);
            ulong budget = Math.Max(1, info.InitialBytes + info.DirtyBytes);
            long moved = 0;
            while ((ulong)moved < budget)
            {
                int n = await ReadIntoFrameAsync(i, stream, MigrationFrameType.PreCopyData, allowNoData: true, token).ConfigureAwait(false);
                if (n == 0)
                    break;
                moved += n;
                _preCopyBytes[i] += n;
                if (_progress is not null)
                {
                    UpdateBandwidth(moved);
                    Report(null);
                }
            }
            if (!_initSent[i])
            {
                var after = await QueryPrecopyAsync(i, token).ConfigureAwait(false);
                if (after.InitialBytes == 0)
                {
                    _initSent[i] = true;
                    Interlocked.Increment(ref _markersSent[i]);
                    await _writer.WriteFrameAsync(MigrationFrameType.InitDataSent, (ushort)i, default, token).ConfigureAwait(false);
                }
            }
            return moved;
        }

        // VFIO_MIG_GET_PRECOPY_INFO. REINIT (new initial data appeared, spec §4.7) means the initial data must be
        // sent and acknowledged again before the switchover. Without the v2 opt-in the flag is an echo: ignored.
        private async Task<Device.PrecopyEstimate> QueryPrecopyAsync(int i, CancellationToken token)
        {
            var stream = _streams[i]!;
            var info = await DeviceAsync(i, "VFIO_MIG_GET_PRECOPY_INFO", _ => stream.GetPrecopyInfoAsync(token)).ConfigureAwait(false);
            if (info.Reinit && _precopyInfoV2[i])
            {
                _reinits[i]++;
                EngineLog.Reinit(_log, i, info.InitialBytes, _initSent[i]);
                _trace.Reinit(i, info.InitialBytes);
                if (_initSent[i])
                {
                    _initSent[i] = false;
                    Report($"device {i} reported REINIT: its new initial data needs a new switchover-ack", force: true);
                }
            }
            return info;
        }

        // The switchover's last look (vmm-side §1.4, as QEMU 11.1): a device still pre-copying that reports REINIT
        // now, or whose query fails, has initial data the destination never acknowledged, and no ack may be asked
        // for after the switchover decision: the migration fails and the sources run on.
        private async Task CheckNoReinitAtSwitchoverAsync(CancellationToken token)
        {
            if (!_preCopy || _forced || !_options.RequireSwitchoverAck)
                return;
            for (int i = 0; i < _count; i++)
            {
                if (!_precopyInfoV2[i] || _streams[i] is not { } stream)
                    continue;
                string why;
                try
                {
                    var info = await stream.GetPrecopyInfoAsync(token).ConfigureAwait(false);
                    if (!info.Reinit)
                        continue;
                    _reinits[i]++;
                    why = $"reported REINIT ({info.InitialBytes} new initial bytes)";
                }
                catch (VfioException ex)
                {
                    why = $"could not be asked for REINIT ({ex.Message}), so a re-init is assumed";
                }
                throw Fail(i, Errno.EAGAIN, $"at the switchover the device {why}: its new initial data was never acknowledged by the destination and no switchover-ack may be requested after the switchover decision; the migration may be retried");
            }
        }

        // Bandwidth = pre-copy bytes / time spent reading and sending them (idle waits excluded).
        private void UpdateBandwidth(long inRound)
        {
            var active = _activeTime + (_roundStart != 0 ? Stopwatch.GetElapsedTime(_roundStart) : TimeSpan.Zero);
            long moved = _moved + inRound;
            if (moved > 0 && active > TimeSpan.Zero)
                _bandwidth = moved / active.TotalSeconds;
        }

        // Sum over devices of what the switchover would still move: max(stop-copy size, initial + dirty),
        // so nothing is counted twice whether or not the device's stop-copy estimate includes the dirty bytes.
        private async Task<long> PendingBytesAsync(CancellationToken token)
        {
            ulong total = 0;
            for (int i = 0; i < _count; i++)
            {
                var info = await QueryPrecopyAsync(i, token).ConfigureAwait(false);
                ulong pre = info.InitialBytes + info.DirtyBytes;
                ulong stop = 0;
                if (_stopCopySizeKnown[i])
                {
                    try
                    {
                        stop = await _devices[i].GetStopCopySizeAsync(token).ConfigureAwait(false);
                    }
                    catch (VfioException)
                    {
                        _stopCopySizeKnown[i] = false;
                    }
                }
                total += Math.Max(pre, stop);
            }
            return (long)Math.Min(total, long.MaxValue / 2);
        }

        // ---- Switchover and stop-copy ---------------------------------------------------------

        private async Task SwitchoverAsync(CancellationToken token)
        {
            Enter(MigrationPhase.Switchover);
            EngineLog.Switchover(_log, _round, _pending, _threshold, _forced);
            _trace.Switchover(_round, _pending, _threshold, _bandwidth, _forced, _convergence);
            Report(_forced ? "switchover (forced)" : "switchover");
            await _writer.WriteFrameAsync(MigrationFrameType.Switchover, MigrationFrame.StreamLevel, default, token).ConfigureAwait(false);
            _downtimeStart = Stopwatch.GetTimestamp();
            if (_p2p)
            {
                // Every device stops initiating P2P before any device stops.
                var quiet = _preCopy ? VfioMigrationState.PreCopyP2P : VfioMigrationState.RunningP2P;
                for (int i = 0; i < _count; i++)
                {
                    _touched[i] = true;
                    await DeviceAsync(i, $"SET device_state {MigrationStateMachine.Name(quiet)}", d => d.SetStateAsync(quiet, token)).ConfigureAwait(false);
                }
            }
            await CheckNoReinitAtSwitchoverAsync(token).ConfigureAwait(false);
            for (int i = 0; i < _count; i++)
            {
                _touched[i] = true;
                var stream = await DeviceAsync(i, "SET device_state STOP_COPY", d => d.SetStateAsync(VfioMigrationState.StopCopy, token)).ConfigureAwait(false);
                if (stream is not null)
                {
                    // Without pre-copy STOP>STOP_COPY opens the stream; after pre-copy the same stream continues.
                    if (_streams[i] is { } old)
                        await old.DisposeAsync().ConfigureAwait(false);
                    _streams[i] = stream;
                }
                else if (_streams[i] is null)
                {
                    throw Fail(i, Errno.EPROTO, "the device entered STOP_COPY without a saving stream");
                }
            }
        }

        private async Task StopCopyAsync(CancellationToken token)
        {
            Enter(MigrationPhase.StopCopy);
            Report("sources in STOP_COPY");
            await CheckpointAsync(MigrationCheckpoint.StopCopy, token).ConfigureAwait(false);
            for (int i = 0; i < _count; i++)
            {
                var stream = _streams[i]!;
                int n;
                while ((n = await ReadIntoFrameAsync(i, stream, MigrationFrameType.StopCopyData, allowNoData: false, token).ConfigureAwait(false)) > 0)
                {
                    _stopCopyBytes[i] += n;
                    Report(null);
                }
                await _writer.WriteUInt64Async(MigrationFrameType.DeviceEnd, (ushort)i, (ulong)(_preCopyBytes[i] + _stopCopyBytes[i]), token).ConfigureAwait(false);
            }
            await _writer.WriteFrameAsync(MigrationFrameType.End, MigrationFrame.StreamLevel, default, token).ConfigureAwait(false);
        }

        // Reads once from the device straight into a frame in the pipe; 0 = nothing (ENOMSG/0 in pre-copy, EOF in stop-copy).
        private async Task<int> ReadIntoFrameAsync(int i, IMigrationDataStream stream, MigrationFrameType type, bool allowNoData, CancellationToken token)
        {
            var buffer = _writer.GetPayloadBuffer(_options.BufferBytes);
            int n;
            try
            {
                n = await stream.ReadAsync(buffer, token).ConfigureAwait(false);
            }
            catch (VfioException ex) when (allowNoData && ex.Errno == Errno.ENOMSG)
            {
                return 0;
            }
            catch (VfioException ex)
            {
                throw Fail(i, ex.Errno, $"read migration data: {ex.Detail ?? ex.Message}", ex);
            }
            if (n < 0 || n > buffer.Length)
                throw Fail(i, Errno.EIO, $"the device returned {n} from a read of {buffer.Length} bytes");
            if (n > 0)
                await _writer.CommitAsync(type, (ushort)i, n, token).ConfigureAwait(false);
            return n;
        }

        // ---- Completion, failure, recovery ----------------------------------------------------

        private async Task CleanupAsync()
        {
            Enter(MigrationPhase.Cleanup);
            await DisposeStreamsAsync().ConfigureAwait(false);
            for (int i = 0; i < _count; i++)
            {
                try
                {
                    await _devices[i].SetStateAsync(VfioMigrationState.Stop, CancellationToken.None).ConfigureAwait(false);
                }
                catch (VfioException ex)
                {
                    // The destination already runs the workload: do not restart the source. Report only.
                    _warnings.Add($"source device {i} ({_devices[i].Name}) did not go STOP_COPY>STOP after success: {ex.Message}");
                }
            }
        }

        private async Task<Exception> ResolveFailureAsync(Exception ex, Task? returnLoop, CancellationToken userToken)
        {
            if (userToken.IsCancellationRequested && ex is OperationCanceledException)
                return ex;
            // A destination failure is the root cause when it surfaces here only as a transport error or as
            // the cancellation of our linked token; give the return path a moment to deliver it.
            // Device failures here arrive wrapped (MigrationException, Side = Source); a bare VfioException
            // or IOException comes from the transport (broken pipe, connection reset, …).
            bool secondary = ex is OperationCanceledException or IOException
                || ex is MigrationException { Errno: Errno.EPIPE or Errno.ECONNRESET or Errno.ENOTCONN }
                || ex is MigrationException { Side: MigrationSide.Destination };
            if (secondary && Volatile.Read(ref _remoteFailure) is null && returnLoop is not null)
            {
                try
                {
                    await returnLoop.WaitAsync(_options.FailureNoticeTimeout, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // Timeout or the loop's own end: whatever it recorded is used below.
                }
            }
            if (secondary && Volatile.Read(ref _remoteFailure) is { } remote)
                return remote;
            // Our own transport error carries what the transport knows (it may relay the peer's reason);
            // only a bare cancellation of our linked token is explained by a broken return path.
            if (ex is OperationCanceledException && Volatile.Read(ref _returnPathFailure) is { } broken)
                return broken;
            return ex switch
            {
                MigrationException => ex,
                OperationCanceledException => new MigrationException(MigrationSide.Source, _phase, -1, null, Errno.ECANCELED, "the migration was stopped", ex),
                VfioException v => new MigrationException(MigrationSide.Source, _phase, -1, null, v.Errno, v.Detail ?? v.Message, v),
                _ => new MigrationException(MigrationSide.Source, _phase, -1, null, Errno.EIO, ex.Message, ex),
            };
        }

        // Commit was sent, then something failed (transport, cancellation, a device, the return path). Only the
        // destination's word may restart the sources: wait (bounded, even when canceled) for it.
        private async Task<MigrationStatistics> UnknownWindowAsync(Exception ex)
        {
            try
            {
                await _complete.Task.WaitAsync(_options.FailureNoticeTimeout, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Judged below from what the return path delivered.
            }
            if (Volatile.Read(ref _completeSeen) || Volatile.Read(ref _committedSeen))
            {
                // The destination recorded the commit: the migration succeeded, whatever happened here meanwhile.
                if (!Volatile.Read(ref _completeSeen))
                    _warnings.Add($"the destination recorded the commit but did not report its devices running ({ex.Message}); it holds the state: run 'vfio-mig resolve {_id}' on the destination host");
                else
                    _warnings.Add($"the migration completed although the source saw a failure after committing: {ex.Message}");
                return await FinishCommittedAsync().ConfigureAwait(false);
            }
            if (Volatile.Read(ref _remoteFailure) is { } aborted)
            {
                // An Error after Commit: the destination recorded aborted (it refuses any later Commit) and reset
                // its devices, so restarting the sources is safe.
                EngineLog.Failed(_log, MigrationSide.Source, aborted);
                _trace.Fault(aborted);
                var recovery = await RollbackAsync().ConfigureAwait(false);
                _trace.Recovery("rollback", recovery.Count == 0 ? "the destination decided aborted; source devices RUNNING again" : string.Join("; ", recovery));
                await WriteRecordQuietlyAsync(MigrationRecordStatus.Aborted, "the destination decided aborted; sources running again: " + aborted.Message).ConfigureAwait(false);
                aborted.RecoveryErrors = recovery;
                aborted.Statistics = BuildStatistics();
                aborted.MigrationId = _id;
                ExceptionDispatchInfo.Throw(aborted);
            }

            // No answer: the destination may have committed and run, or not. Neither restart nor reset: the
            // sources keep their state in STOP_COPY until the decision is asked for.
            await DisposeStreamsAsync().ConfigureAwait(false);
            var cause = Volatile.Read(ref _returnPathFailure) is { } broken && ex is OperationCanceledException ? broken : ex;
            var errno = cause is VfioException v ? v.Errno : cause is OperationCanceledException ? Errno.ECANCELED : Errno.EIO;
            string why = $"the outcome is unknown after Commit was sent ({(cause as VfioException)?.Detail ?? cause.Message}); the source devices stay stopped with their state (held); the destination decides: vfio-mig resolve {_id}";
            EngineLog.Held(_log, MigrationSide.Source, _id, why);
            _trace.Fault(cause);
            _trace.Recovery("hold", why);
            await WriteRecordQuietlyAsync(MigrationRecordStatus.Held, why).ConfigureAwait(false);
            throw new MigrationException(MigrationSide.Source, _phase, -1, null, errno, why, cause)
            {
                Held = true,
                MigrationId = _id,
                Statistics = BuildStatistics(),
            };
        }

        private async Task<MigrationStatistics> FinishCommittedAsync()
        {
            _downtime = Stopwatch.GetElapsedTime(_downtimeStart);
            if (_complete.Task.IsCompletedSuccessfully)
            {
                ulong startMicros = _complete.Task.Result;
                _destinationStart = TimeSpan.FromTicks((long)Math.Min(startMicros, (ulong)(TimeSpan.MaxValue.Ticks / 10)) * 10);
            }
            await CleanupAsync().ConfigureAwait(false);
            await WriteRecordQuietlyAsync(MigrationRecordStatus.Completed, "committed; the source devices are stopped for good").ConfigureAwait(false);
            Enter(MigrationPhase.Completed);
            Report("migration complete");
            return Finish();
        }

        private ValueTask WriteRecordAsync(MigrationRecordStatus status, string detail, CancellationToken token) => _recorder.WriteAsync(status, detail, token);

        private Task WriteRecordQuietlyAsync(MigrationRecordStatus status, string detail) => _recorder.WriteQuietlyAsync(status, detail);

        private ValueTask CheckpointAsync(MigrationCheckpoint point, CancellationToken token) => SideRecorder.CheckpointAsync(_options, point, token);

        private async Task<IReadOnlyList<string>> RollbackAsync()
        {
            await DisposeStreamsAsync().ConfigureAwait(false);
            var errors = new List<string>();
            var needsRun = new bool[_count];
            for (int i = 0; i < _count; i++)
            {
                if (!_touched[i])
                    continue;
                var dev = _devices[i];
                try
                {
                    var state = await dev.GetStateAsync(CancellationToken.None).ConfigureAwait(false);
                    if (state == VfioMigrationState.Running)
                        continue;
                    needsRun[i] = true;
                    // Stopped devices restart together: all to RUNNING_P2P first when P2P is in use.
                    if (_p2p && state is VfioMigrationState.StopCopy or VfioMigrationState.Stop)
                        await dev.SetStateAsync(VfioMigrationState.RunningP2P, CancellationToken.None).ConfigureAwait(false);
                }
                catch (VfioException)
                {
                    needsRun[i] = true;
                }
            }
            for (int i = 0; i < _count; i++)
            {
                if (!needsRun[i])
                    continue;
                var dev = _devices[i];
                try
                {
                    await dev.SetStateAsync(VfioMigrationState.Running, CancellationToken.None).ConfigureAwait(false);
                }
                catch (VfioException setError)
                {
                    try
                    {
                        await dev.ResetAsync(CancellationToken.None).ConfigureAwait(false);
                    }
                    catch (VfioException resetError)
                    {
                        errors.Add($"source device {i} ({dev.Name}): SET RUNNING failed ({setError.Message}) and reset failed ({resetError.Message})");
                    }
                }
            }
            return errors;
        }

        private async Task NotifyAbortAsync(Exception failure)
        {
            var status = failure switch
            {
                MigrationException m => new MigrationStatus(m.Errno, (byte)m.Phase, m.Message),
                OperationCanceledException => new MigrationStatus(Errno.ECANCELED, (byte)_phase, "the source canceled the migration"),
                VfioException v => new MigrationStatus(v.Errno, (byte)_phase, v.Message),
                _ => new MigrationStatus(Errno.EIO, (byte)_phase, failure.Message),
            };
            using var timeout = new CancellationTokenSource(_options.FailureNoticeTimeout);
            try
            {
                if (_writer.BytesWritten == 0)
                    await _writer.WritePreambleAsync(timeout.Token).ConfigureAwait(false);
                await _writer.WriteStatusAsync(MigrationFrameType.Abort, MigrationFrame.StreamLevel, status, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is VfioException or OperationCanceledException or InvalidOperationException)
            {
                // The peer is gone or not reading; completing the stream below is all that is left.
            }
        }

        private async Task DisposeStreamsAsync()
        {
            for (int i = 0; i < _count; i++)
            {
                if (_streams[i] is { } s)
                {
                    _streams[i] = null;
                    try
                    {
                        await s.DisposeAsync().ConfigureAwait(false);
                    }
                    catch (VfioException)
                    {
                    }
                }
            }
        }

        // ---- Return path ----------------------------------------------------------------------

        private async Task ReturnLoopAsync(CancellationToken token)
        {
            var reader = new MigrationStreamReader(_returnPath, MigrationStreamKind.Return, MigrationFrameCodec.HardMaxPayload) { OnFrame = (t, d, n) => _trace.Frame(false, t, d, n) };
            try
            {
                var preamble = await reader.ReadPreambleAsync(token).ConfigureAwait(false);
                if (preamble.DeviceCount != _count)
                    throw new VfioException(Errno.EPROTO, "read return path", $"the destination answers for {preamble.DeviceCount} devices, the source migrates {_count}");
                while (await reader.ReadFrameAsync(token).ConfigureAwait(false) is { } frame)
                {
                    EngineLog.ReturnFrame(_log, frame.Type, frame.Device, frame.Length);
                    int d = frame.Device;
                    switch (frame.Type)
                    {
                        case MigrationFrameType.Ready:
                            _destinationCaps[d] = (VfioMigrationFlags)MigrationFrameCodec.ReadUInt64(frame.Payload);
                            if (++_readyCount == _count)
                                _ready.TrySetResult();
                            break;
                        case MigrationFrameType.InitDataAck:
                            if (!_preCopy)
                                throw new VfioException(Errno.EPROTO, "read return path", $"switchover-ack for device {d}, but nothing is pre-copied");
                            if (Interlocked.Increment(ref _acksReceived[d]) > Volatile.Read(ref _markersSent[d]))
                                throw new VfioException(Errno.EPROTO, "read return path", $"switchover-ack for device {d} without an init-data-sent marker");
                            break;
                        case MigrationFrameType.LoadResult:
                            var load = MigrationFrameCodec.ReadStatus(frame.Payload);
                            if (!load.IsSuccess)
                                SetRemoteFailure(new MigrationException(MigrationSide.Destination, (MigrationPhase)load.Phase, d, null, load.Errno, load.Message), reported: true);
                            else if (++_loadedCount == _count)
                                _loaded.TrySetResult();
                            break;
                        case MigrationFrameType.Committed:
                            if (!Volatile.Read(ref _commitSent))
                                throw new VfioException(Errno.EPROTO, "read return path", "the destination reports a commit that was never sent");
                            Volatile.Write(ref _committedSeen, true);
                            break;
                        case MigrationFrameType.Complete:
                            if (!Volatile.Read(ref _commitSent))
                                throw new VfioException(Errno.EPROTO, "read return path", "the destination reports its devices running before the source committed");
                            Volatile.Write(ref _completeSeen, true);
                            _complete.TrySetResult(MigrationFrameCodec.ReadUInt64(frame.Payload));
                            break;
                        case MigrationFrameType.Error:
                            var error = MigrationFrameCodec.ReadStatus(frame.Payload);
                            SetRemoteFailure(new MigrationException(MigrationSide.Destination, (MigrationPhase)error.Phase, frame.IsStreamLevel ? -1 : d, null, error.Errno, error.Message), reported: true);
                            return;
                    }
                }
                if (!_complete.Task.IsCompleted)
                    throw new VfioException(Errno.EPIPE, "read return path", "the destination closed the return path before reporting success");
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                _ready.TrySetCanceled(token);
                _loaded.TrySetCanceled(token);
                _complete.TrySetCanceled(token);
            }
            catch (VfioException ex)
            {
                SetRemoteFailure(new MigrationException(MigrationSide.Destination, _phase, -1, null, ex.Errno, "return path: " + (ex.Detail ?? ex.Message), ex), reported: false);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
            {
                SetRemoteFailure(new MigrationException(MigrationSide.Destination, _phase, -1, null, Errno.EIO, "return path: " + ex.Message, ex), reported: false);
            }
        }

        private void SetRemoteFailure(MigrationException failure, bool reported)
        {
            ref MigrationException? slot = ref reported ? ref _remoteFailure : ref _returnPathFailure;
            if (Interlocked.CompareExchange(ref slot, failure, null) is null)
            {
                _ready.TrySetException(failure);
                _loaded.TrySetException(failure);
                _complete.TrySetException(failure);
                try
                {
                    _cts?.Cancel();
                }
                catch (ObjectDisposedException)
                {
                }
            }
        }

        // ---- Helpers --------------------------------------------------------------------------

        private async Task<T> DeviceAsync<T>(int i, string operation, Func<IVfioMigrationDevice, ValueTask<T>> call)
        {
            try
            {
                return await call(_devices[i]).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                throw Fail(i, ex.Errno, $"{operation}: {ex.Detail ?? ex.Message}", ex);
            }
        }

        private MigrationException Fail(int i, Errno errno, string detail, Exception? inner = null)
            => new(MigrationSide.Source, _phase, i, i >= 0 ? _devices[i].Name : null, errno, detail, inner);

        private void Enter(MigrationPhase phase)
        {
            _phase = phase;
            EngineLog.PhaseEntered(_log, MigrationSide.Source, phase);
            _trace.Phase(phase);
        }

        private void Report(string? message, bool force = false)
        {
            if (_progress is null)
                return;
            var now = _clock.Elapsed;
            if (!force && message is null && now - _lastProgress < _options.ProgressInterval)
                return;
            _lastProgress = now;
            _progress.Report(new MigrationProgress
            {
                Side = MigrationSide.Source,
                Phase = _phase,
                Round = _round,
                PreCopyBytes = _preCopyBytes.Sum(),
                StopCopyBytes = _stopCopyBytes.Sum(),
                BandwidthBytesPerSecond = _bandwidth,
                PendingBytes = _pending,
                ThresholdBytes = _threshold,
                AcksReceived = _preCopy ? AckCount : 0,
                AcksExpected = _preCopy ? _count : 0,
                Elapsed = now,
                Message = message,
            });
        }

        private MigrationStatistics Finish()
        {
            var statistics = BuildStatistics();
            _trace.Completed(statistics);
            EngineLog.Completed(_log, MigrationSide.Source, statistics.TotalBytes, statistics.Downtime.TotalMilliseconds, statistics.TotalTime.TotalMilliseconds);
            return statistics;
        }

        private MigrationStatistics BuildStatistics()
        {
            long stop = _stopCopyBytes.Sum();
            var devices = new DeviceMigrationStatistics[_count];
            for (int i = 0; i < _count; i++)
                devices[i] = new DeviceMigrationStatistics(i, _devices[i].Name, _caps[i], _preCopyBytes[i], _stopCopyBytes[i], IsAcked(i)) { PrecopyInfoV2 = _precopyInfoV2[i], Reinits = _reinits[i] };
            return new MigrationStatistics
            {
                MigrationId = _id,
                Side = MigrationSide.Source,
                DeviceCount = _count,
                PreCopyUsed = _preCopy,
                P2PUsed = _p2p,
                Rounds = _round,
                PreCopyBytes = _preCopyBytes.Sum(),
                StopCopyBytes = stop,
                StreamBytes = _writer.BytesWritten,
                PreCopyBandwidthBytesPerSecond = _bandwidth,
                StopCopyBandwidthBytesPerSecond = _stopCopyTime > TimeSpan.Zero ? stop / _stopCopyTime.TotalSeconds : 0,
                PendingBytesAtSwitchover = _pending,
                ForcedSwitchover = _forced,
                SetupTime = _setupTime,
                PreCopyTime = _preCopyTime,
                StopCopyTime = _stopCopyTime,
                DestinationStartTime = _destinationStart,
                Downtime = _downtime,
                TotalTime = _clock.Elapsed,
                Devices = devices,
                Warnings = _warnings.ToArray(),
            };
        }
    }
}
