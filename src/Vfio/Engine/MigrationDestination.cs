using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using System.Runtime.ExceptionServices;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// The destination half of a live migration: reads the forward stream, puts N destination devices into
/// RESUMING, writes their data, validates (RESUMING→STOP), reports them loaded and waits for the source's
/// Commit; it records the decision (committed, or aborted on any failure before) and only then starts them
/// (→RUNNING, through RUNNING_P2P for P2P devices, all together). It is the decision point of the commit
/// protocol (docs/commit-protocol.md). Before the commit, any failure resets every touched device and an
/// Error frame tells the source; after it, no device is reset any more.
/// </summary>
public sealed class MigrationDestination
{
    private readonly IReadOnlyList<IVfioMigrationDevice> _devices;
    private readonly MigrationOptions _options;

    /// <summary>Creates the destination half for <paramref name="devices"/> (device index = list position).</summary>
    /// <exception cref="ArgumentException">No devices, too many, or invalid options.</exception>
    public MigrationDestination(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(devices);
        if (devices.Count == 0 || devices.Count >= MigrationFrame.StreamLevel)
            throw new ArgumentException($"between 1 and {MigrationFrame.StreamLevel - 1} devices are needed", nameof(devices));
        _devices = devices;
        _options = options ?? MigrationOptions.Default;
        _options.Validate();
    }

    /// <summary>
    /// Runs the destination half: <paramref name="input"/> carries the forward stream, <paramref name="returnPath"/>
    /// the replies. Both are completed when this returns.
    /// </summary>
    /// <returns>The destination's statistics once the commit is recorded and every device is RUNNING.</returns>
    /// <exception cref="MigrationException">The migration failed (here or at the source) and was decided aborted; the
    /// destination devices were reset. With <see cref="MigrationException.Held"/>: it was committed but a device
    /// did not start; the devices keep the loaded state for <c>vfio-mig resolve</c>.</exception>
    /// <exception cref="OperationCanceledException">Canceled; the destination devices were reset.</exception>
    public async Task<MigrationStatistics> RunAsync(PipeReader input, PipeWriter returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(returnPath);
        var run = new DestinationRun(_devices, _options, input, returnPath, progress);
        return await run.ExecuteAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the destination half over byte streams (e.g. one <c>NetworkStream</c> for both directions). The streams stay open.</summary>
    /// <inheritdoc cref="RunAsync(PipeReader, PipeWriter, IProgress{MigrationProgress}?, CancellationToken)"/>
    public Task<MigrationStatistics> RunAsync(System.IO.Stream input, System.IO.Stream returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(returnPath);
        return RunAsync(
            StreamPipes.Reader(input),
            StreamPipes.Writer(returnPath),
            progress,
            cancellationToken);
    }

    private sealed class DestinationRun
    {
        private const uint ReturnMaxPayload = 4096;
        private readonly IReadOnlyList<IVfioMigrationDevice> _devices;
        private readonly MigrationOptions _options;
        private readonly PipeReader _input;
        private readonly PipeWriter _returnPath;
        private readonly IProgress<MigrationProgress>? _progress;
        private readonly MigrationStreamWriter _writer;
        private readonly MigrationStreamReader _reader;
        private readonly int _count;
        private readonly MigrationDeviceSetup[] _setups;
        private readonly Compat.MigrationProfile?[] _profiles;
        private readonly VfioMigrationFlags[] _caps;
        private readonly IMigrationDataStream?[] _streams;
        private readonly bool[] _touched;
        private readonly long[] _preCopyBytes;
        private readonly long[] _stopCopyBytes;
        private readonly bool[] _ended;
        private readonly bool[] _acked;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly ILogger _log;
        private readonly IMigrationDecisionStore _store;
        private readonly List<string> _warnings = [];
        private readonly SideRecorder _recorder;
        private readonly MigrationTrace _trace;
        private Guid _id;
        private bool _commitAttempted;
        private MigrationPhase _phase = MigrationPhase.Setup;
        private bool _switchover;
        private TimeSpan _setupTime;
        private TimeSpan _switchoverAt;
        private TimeSpan _startTime;
        private TimeSpan _lastProgress = TimeSpan.MinValue;

        public DestinationRun(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, PipeReader input, PipeWriter returnPath, IProgress<MigrationProgress>? progress)
        {
            _trace = new MigrationTrace(options, MigrationSide.Destination, devices);
            _devices = _trace.Devices;
            _options = options;
            _input = input;
            _returnPath = returnPath;
            _progress = progress;
            _count = devices.Count;
            _writer = new MigrationStreamWriter(returnPath, MigrationStreamKind.Return, (ushort)_count, ReturnMaxPayload) { OnFrame = (t, d, n) => _trace.Frame(true, t, d, n) };
            _reader = new MigrationStreamReader(input, MigrationStreamKind.Forward, (uint)Math.Max(options.BufferBytes, (int)MigrationFrameCodec.DefaultMaxPayload)) { OnFrame = (t, d, n) => _trace.Frame(false, t, d, n) };
            _setups = new MigrationDeviceSetup[_count];
            _profiles = new Compat.MigrationProfile?[_count];
            _caps = new VfioMigrationFlags[_count];
            _streams = new IMigrationDataStream?[_count];
            _touched = new bool[_count];
            _preCopyBytes = new long[_count];
            _stopCopyBytes = new long[_count];
            _ended = new bool[_count];
            _acked = new bool[_count];
            _log = options.LoggerFactory.CreateLogger<MigrationDestination>();
            _store = options.DecisionStore ?? new InMemoryMigrationStore();
            _recorder = new SideRecorder(_store, MigrationSide.Destination, devices, _log, _warnings, _trace);
        }

        private async Task<MigrationStatistics> RunAsync(CancellationToken token)
        {
            try
            {
                await _writer.WritePreambleAsync(token).ConfigureAwait(false);
                await SetupAsync(token).ConfigureAwait(false);
                _setupTime = _clock.Elapsed;
                await LoadAsync(token).ConfigureAwait(false);
                await DisposeStreamsAsync().ConfigureAwait(false);
                await ValidateAsync(token).ConfigureAwait(false);
                await CheckpointAsync(MigrationCheckpoint.Loaded, token).ConfigureAwait(false);
                await AwaitCommitAsync(token).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                var failure = Normalize(ex, token);
                EngineLog.Failed(_log, MigrationSide.Destination, failure);
                _trace.Fault(failure);
                var decision = await DecideAbortedAsync(failure).ConfigureAwait(false);
                if (decision?.Decision == MigrationDecision.Committed)
                    return await StartCommittedAsync().ConfigureAwait(false);
                if (decision is null && _commitAttempted)
                {
                    // The store failed while recording the commit: it may be on disk. Neither reset nor start.
                    var held = Fail(-1, Errno.EIO, $"the decision could not be recorded or read back ({failure.Message}); the devices keep the loaded state (held): vfio-mig resolve {_id}", failure);
                    throw await HoldAsync(held).ConfigureAwait(false);
                }
                var recovery = await ResetTouchedAsync().ConfigureAwait(false);
                _trace.Recovery("reset", recovery.Count == 0 ? "destination devices reset" : string.Join("; ", recovery));
                foreach (var problem in recovery)
                    EngineLog.RecoveryProblem(_log, MigrationSide.Destination, problem);
                if (failure is MigrationException { Side: MigrationSide.Destination } or OperationCanceledException)
                    await NotifyErrorAsync(failure).ConfigureAwait(false);
                await WriteRecordQuietlyAsync(MigrationRecordStatus.Aborted, recovery.Count == 0 ? "devices reset: " + failure.Message : "reset failed: " + string.Join("; ", recovery)).ConfigureAwait(false);
                if (failure is MigrationException me)
                {
                    me.RecoveryErrors = recovery;
                    me.Statistics = BuildStatistics();
                    me.MigrationId = _id;
                }
                ExceptionDispatchInfo.Throw(failure);
                throw;
            }
            return await StartCommittedAsync().ConfigureAwait(false);
        }

        // Waits for the source's Commit (bounded by CommitTimeout) and records the decision committed. Returns
        // only when committed is on record; a decision already on record as aborted refuses the Commit.
        private async Task AwaitCommitAsync(CancellationToken token)
        {
            Report("destination devices loaded; waiting for the source's commit", force: true);
            MigrationFrame frame;
            using (var wait = CancellationTokenSource.CreateLinkedTokenSource(token))
            {
                wait.CancelAfter(_options.CommitTimeout);
                try
                {
                    frame = await NextFrameAsync(wait.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    throw Fail(-1, Errno.ETIMEDOUT, $"no Commit from the source within {_options.CommitTimeout.TotalSeconds:0.#} s after the devices were loaded");
                }
            }
            if (frame.Type == MigrationFrameType.Abort)
                throw SourceAborted(frame);
            if (frame.Type != MigrationFrameType.Commit)
                throw Fail(-1, Errno.EPROTO, $"expected Commit, got {frame}");

            _commitAttempted = true;
            MigrationDecisionRecord decided;
            try
            {
                decided = await _store.DecideAsync(new MigrationDecisionRecord(_id, MigrationDecision.Committed, "destination", "the source committed after every device loaded", DateTimeOffset.UtcNow), CancellationToken.None).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                throw Fail(-1, ex.Errno, $"could not record the commit: {ex.Detail ?? ex.Message}", ex);
            }
            if (decided.Decision != MigrationDecision.Committed)
                throw Fail(-1, Errno.ECANCELED, $"the migration was already decided aborted ({decided.DecidedBy}: {decided.Reason}); the late Commit is refused");
            EngineLog.Decided(_log, MigrationSide.Destination, _id, MigrationDecision.Committed);
            _trace.Recovery("decision", "committed");
        }

        // Records aborted unless a decision exists; returns the decision on record, or null when the store failed
        // (or no id was known yet: nothing to decide, the destination never loaded this migration).
        private async Task<MigrationDecisionRecord?> DecideAbortedAsync(Exception failure)
        {
            if (_id == Guid.Empty)
                return null;
            try
            {
                var decided = await _store.DecideAsync(new MigrationDecisionRecord(_id, MigrationDecision.Aborted, "destination", failure.Message, DateTimeOffset.UtcNow), CancellationToken.None).ConfigureAwait(false);
                EngineLog.Decided(_log, MigrationSide.Destination, _id, decided.Decision);
                _trace.Recovery("decision", decided.Decision == MigrationDecision.Committed ? "committed (already on record)" : "aborted: " + decided.Reason);
                return decided;
            }
            catch (VfioException ex)
            {
                EngineLog.RecoveryProblem(_log, MigrationSide.Destination, $"could not record the decision aborted: {ex.Message}");
                try
                {
                    return await _store.ReadDecisionAsync(_id, CancellationToken.None).ConfigureAwait(false);
                }
                catch (VfioException)
                {
                    return null;
                }
            }
        }

        // Committed is on record: from here no device is reset, whatever happens to the connection or the caller.
        private async Task<MigrationStatistics> StartCommittedAsync()
        {
            Enter(MigrationPhase.Start);
            await CheckpointAsync(MigrationCheckpoint.Committed, CancellationToken.None).ConfigureAwait(false);
            await TellQuietlyAsync(MigrationFrameType.Committed, default).ConfigureAwait(false);
            var startClock = Stopwatch.StartNew();
            try
            {
                await StartAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is VfioException or OperationCanceledException)
            {
                var held = Fail(ex is MigrationException m ? m.DeviceIndex : -1, ex is VfioException v ? v.Errno : Errno.ECANCELED,
                    $"the migration is committed but a device did not start ({(ex as VfioException)?.Detail ?? ex.Message}); the devices keep the migrated state (held): vfio-mig resolve {_id}", ex);
                throw await HoldAsync(held).ConfigureAwait(false);
            }
            _startTime = startClock.Elapsed;
            Enter(MigrationPhase.Completed);
            await WriteRecordQuietlyAsync(MigrationRecordStatus.Completed, "committed; destination devices running").ConfigureAwait(false);
            Span<byte> micros = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(micros, (ulong)(_startTime.Ticks / 10));
            if (!await TellQuietlyAsync(MigrationFrameType.Complete, micros.ToArray()).ConfigureAwait(false))
                _warnings.Add($"the destination devices run, but the source could not be told; it holds until 'vfio-mig resolve {_id}' tells it the decision committed");
            Report("destination devices running", force: true);
            var statistics = BuildStatistics();
            _trace.Completed(statistics);
            EngineLog.Completed(_log, MigrationSide.Destination, statistics.TotalBytes, statistics.Downtime.TotalMilliseconds, statistics.TotalTime.TotalMilliseconds);
            return statistics;
        }

        private async Task<MigrationException> HoldAsync(MigrationException held)
        {
            EngineLog.Held(_log, MigrationSide.Destination, _id, held.Message);
            _trace.Fault(held);
            _trace.Recovery("hold", held.Message);
            await DisposeStreamsAsync().ConfigureAwait(false);
            await WriteRecordQuietlyAsync(MigrationRecordStatus.Held, held.Message).ConfigureAwait(false);
            held.Held = true;
            held.MigrationId = _id;
            held.Statistics = BuildStatistics();
            return held;
        }

        // After the commit the return path is best effort: a frame that cannot go out changes nothing here.
        private async Task<bool> TellQuietlyAsync(MigrationFrameType type, ReadOnlyMemory<byte> payload)
        {
            using var timeout = new CancellationTokenSource(_options.FailureNoticeTimeout);
            try
            {
                await _writer.WriteFrameAsync(type, MigrationFrame.StreamLevel, payload.Span, timeout.Token).ConfigureAwait(false);
                return true;
            }
            catch (Exception ex) when (ex is VfioException or OperationCanceledException or InvalidOperationException or IOException)
            {
                return false;
            }
        }

        private ValueTask WriteRecordAsync(MigrationRecordStatus status, string detail, CancellationToken token) => _recorder.WriteAsync(status, detail, token);

        private Task WriteRecordQuietlyAsync(MigrationRecordStatus status, string detail) => _recorder.WriteQuietlyAsync(status, detail);

        private ValueTask CheckpointAsync(MigrationCheckpoint point, CancellationToken token) => SideRecorder.CheckpointAsync(_options, point, token);

        // A device left mid-migration (RESUMING, STOP, …) by an earlier, interrupted migration is reset first,
        // unless an unresolved committed migration names it: then it holds the only live copy of that state.
        private async Task PrepareDevicesAsync(CancellationToken token)
        {
            IReadOnlyList<MigrationRecord>? records = null;
            for (int i = 0; i < _count; i++)
            {
                var state = await DeviceAsync(i, "GET device_state", d => d.GetStateAsync(token)).ConfigureAwait(false);
                if (state == VfioMigrationState.Running)
                    continue;
                records ??= await ListRecordsAsync(token).ConfigureAwait(false);
                foreach (var r in records)
                {
                    if (r.Side != MigrationSide.Destination || !r.IsUnresolved || !r.Devices.Contains(_devices[i].Name))
                        continue;
                    var decision = await _store.ReadDecisionAsync(r.Id, token).ConfigureAwait(false);
                    if (decision?.Decision == MigrationDecision.Committed)
                        throw Fail(i, Errno.EBUSY, $"the device is in {MigrationStateMachine.Name(state)} holding the committed state of migration {r.Id}; run 'vfio-mig resolve {r.Id}' first");
                }
                EngineLog.ResetBeforeMigration(_log, i, _devices[i].Name, MigrationStateMachine.Name(state));
                Report($"destination device {i} ({_devices[i].Name}) was in {MigrationStateMachine.Name(state)}: reset before the migration", force: true);
                await DeviceAsync(i, "VFIO_DEVICE_RESET", async d =>
                {
                    await d.ResetAsync(token).ConfigureAwait(false);
                    return true;
                }).ConfigureAwait(false);
            }
        }

        private async Task<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken token)
        {
            try
            {
                return await _store.ListRecordsAsync(token).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                throw Fail(-1, ex.Errno, $"read the migration records: {ex.Detail ?? ex.Message}", ex);
            }
        }

        public async Task<MigrationStatistics> ExecuteAsync(CancellationToken token)
        {
            try
            {
                return await RunAsync(token).ConfigureAwait(false);
            }
            finally
            {
                await DisposeStreamsAsync().ConfigureAwait(false);
                await PipeCompletion.CompleteQuietlyAsync(_returnPath).ConfigureAwait(false);
                await PipeCompletion.CompleteQuietlyAsync(_input).ConfigureAwait(false);
                _trace.End();
            }
        }

        private async Task SetupAsync(CancellationToken token)
        {
            var preamble = await _reader.ReadPreambleAsync(token).ConfigureAwait(false);
            if (preamble.DeviceCount != _count)
                throw Fail(-1, Errno.EINVAL, $"the source migrates {preamble.DeviceCount} device(s), this destination has {_count}");
            var begin = await NextFrameAsync(token).ConfigureAwait(false);
            if (begin.Type == MigrationFrameType.Abort)
                throw SourceAborted(begin);
            if (begin.Type != MigrationFrameType.Begin)
                throw Fail(-1, Errno.EPROTO, $"expected the Begin frame, got {begin}");
            var id = MigrationFrameCodec.ReadMigrationId(begin.Payload);
            if (id == Guid.Empty)
                throw Fail(-1, Errno.EPROTO, "the Begin frame carries the empty migration id");
            var earlier = await _store.ReadDecisionAsync(id, token).ConfigureAwait(false);
            if (earlier is not null)
                throw Fail(-1, Errno.EEXIST, $"migration {id} was already decided {earlier.Decision.ToString().ToLowerInvariant()}; a migration id is used once");
            _id = id;
            _recorder.Id = id;
            _trace.Begin(id);
            await WriteRecordAsync(MigrationRecordStatus.Begun, "migrating", token).ConfigureAwait(false);
            for (int i = 0; i < _count; i++)
            {
                var frame = await NextFrameAsync(token).ConfigureAwait(false);
                if (frame.Type == MigrationFrameType.Abort)
                    throw SourceAborted(frame);
                if (frame.Type != MigrationFrameType.Setup || frame.Device != i)
                    throw Fail(-1, Errno.EPROTO, $"expected the Setup frame of device {i}, got {frame}");
                _setups[i] = MigrationFrameCodec.ReadSetup(frame.Payload);
                if ((_setups[i].Plan & MigrationPlanFlags.Profile) != 0)
                    _profiles[i] = await ReadProfileAsync(i, token).ConfigureAwait(false);
            }
            // Devices left mid-migration are reset first: a stopped vfio-user device answers no region queries.
            await PrepareDevicesAsync(token).ConfigureAwait(false);
            await CheckCompatibilityAsync(token).ConfigureAwait(false);
            for (int i = 0; i < _count; i++)
            {
                var caps = await DeviceAsync(i, "VFIO_DEVICE_FEATURE_MIGRATION", d => d.GetCapabilitiesAsync(token)).ConfigureAwait(false);
                _caps[i] = caps;
                var setup = _setups[i];
                if ((caps & VfioMigrationFlags.StopCopy) == 0)
                    throw Fail(i, Errno.EOPNOTSUPP, $"the device cannot migrate: its capabilities {MigrationStateMachine.FormatCaps(caps)} lack STOP_COPY");
                if ((setup.Plan & MigrationPlanFlags.PreCopy) != 0 && (caps & VfioMigrationFlags.PreCopy) == 0)
                    throw Fail(i, Errno.EOPNOTSUPP, $"source device {i} ({setup.Name}, caps {MigrationStateMachine.FormatCaps(setup.Capabilities)}) will be pre-copied, but this device lacks PRE_COPY (caps {MigrationStateMachine.FormatCaps(caps)})");
                if (_count > 1 && (caps & VfioMigrationFlags.P2P) == 0)
                    throw Fail(i, Errno.EOPNOTSUPP, $"{_count} devices migrate together, but this device lacks P2P (caps {MigrationStateMachine.FormatCaps(caps)}); they could not be started together safely");
            }
            for (int i = 0; i < _count; i++)
            {
                _touched[i] = true;
                var stream = await DeviceAsync(i, "SET device_state RESUMING", d => d.SetStateAsync(VfioMigrationState.Resuming, token)).ConfigureAwait(false);
                _streams[i] = stream ?? throw Fail(i, Errno.EPROTO, "STOP>RESUMING opened no resuming stream");
            }
            for (int i = 0; i < _count; i++)
                await _writer.WriteUInt64Async(MigrationFrameType.Ready, (ushort)i, (ulong)_caps[i], token).ConfigureAwait(false);
            Enter((_setups[0].Plan & MigrationPlanFlags.PreCopy) != 0 ? MigrationPhase.PreCopy : MigrationPhase.Switchover);
            EngineLog.Starting(_log, MigrationSide.Destination, _count, (_setups[0].Plan & MigrationPlanFlags.PreCopy) != 0, (_setups[0].Plan & MigrationPlanFlags.P2P) != 0);
            Report("destination devices in RESUMING", force: true);
        }

        private async Task<Compat.MigrationProfile> ReadProfileAsync(int i, CancellationToken token)
        {
            var frame = await NextFrameAsync(token).ConfigureAwait(false);
            if (frame.Type == MigrationFrameType.Abort)
                throw SourceAborted(frame);
            if (frame.Type != MigrationFrameType.Profile || frame.Device != i)
                throw Fail(-1, Errno.EPROTO, $"expected the Profile frame of device {i} after its Setup, got {frame}");
            var bytes = System.Buffers.BuffersExtensions.ToArray(frame.Payload);
            try
            {
                return Compat.MigrationProfileJson.Decode(bytes);
            }
            catch (VfioException ex)
            {
                throw Fail(i, ex.Errno, $"the source's profile: {ex.Detail ?? ex.Message}", ex);
            }
        }

        // Pre-flight compatibility (docs/compatibility.md): every device pair, every reason, before any device is
        // touched here and before Ready lets any source device leave RUNNING.
        private async Task CheckCompatibilityAsync(CancellationToken token)
        {
            if (!_options.CheckCompatibility)
                return;
            var reasons = new List<string>();
            int first = -1;
            for (int i = 0; i < _count; i++)
            {
                if (_profiles[i] is not { } source)
                {
                    _warnings.Add($"device {i}: the source sent no profile (its compatibility check is off); not checked");
                    continue;
                }
                var mine = await DeviceAsync(i, "read the migration profile", d => d.GetProfileAsync(token)).ConfigureAwait(false);
                var report = Compat.CompatibilityCheck.Check(source, mine, (_setups[i].Plan & MigrationPlanFlags.PreCopy) != 0, _count);
                EngineLog.Compatibility(_log, i, report.Compatible, report.Reasons.Count);
                if (report.Compatible)
                    continue;
                first = first < 0 ? i : first;
                reasons.AddRange(report.Reasons.Select(r => _count > 1 ? $"device {i}: {r.Message}" : r.Message));
            }
            _trace.Compatibility(reasons.Count == 0, reasons);
            if (reasons.Count > 0)
                throw Fail(reasons.Count == 1 || _count == 1 ? first : -1, Errno.EOPNOTSUPP, $"incompatible ({reasons.Count} reason{(reasons.Count == 1 ? "" : "s")}): {string.Join("; ", reasons)}");
        }

        private async Task LoadAsync(CancellationToken token)
        {
            while (true)
            {
                var frame = await NextFrameAsync(token).ConfigureAwait(false);
                int d = frame.Device;
                switch (frame.Type)
                {
                    case MigrationFrameType.PreCopyData:
                        if (_switchover || (_setups[d].Plan & MigrationPlanFlags.PreCopy) == 0)
                            throw Fail(-1, Errno.EPROTO, $"{frame} outside pre-copy");
                        await WriteDeviceAsync(d, frame, token).ConfigureAwait(false);
                        _preCopyBytes[d] += frame.Length;
                        break;
                    case MigrationFrameType.InitDataSent:
                        if (_switchover || (_setups[d].Plan & MigrationPlanFlags.PreCopy) == 0)
                            throw Fail(-1, Errno.EPROTO, $"{frame}: device {d} is not pre-copied or the switchover already began");
                        // Every initial byte arrived in order before the marker and was written: acknowledge.
                        _acked[d] = true;
                        await _writer.WriteFrameAsync(MigrationFrameType.InitDataAck, (ushort)d, default, token).ConfigureAwait(false);
                        break;
                    case MigrationFrameType.Switchover:
                        if (_switchover)
                            throw Fail(-1, Errno.EPROTO, $"a second {frame}");
                        _switchover = true;
                        _switchoverAt = _clock.Elapsed;
                        Enter(MigrationPhase.StopCopy);
                        Report("source switching over", force: true);
                        break;
                    case MigrationFrameType.StopCopyData:
                        if (!_switchover || _ended[d])
                            throw Fail(-1, Errno.EPROTO, _ended[d] ? $"{frame} after device {d} ended" : $"{frame} before the switchover");
                        await WriteDeviceAsync(d, frame, token).ConfigureAwait(false);
                        _stopCopyBytes[d] += frame.Length;
                        break;
                    case MigrationFrameType.DeviceEnd:
                        if (!_switchover || _ended[d])
                            throw Fail(-1, Errno.EPROTO, $"unexpected {frame}");
                        ulong declared = MigrationFrameCodec.ReadUInt64(frame.Payload);
                        ulong received = (ulong)(_preCopyBytes[d] + _stopCopyBytes[d]);
                        if (declared != received)
                            throw Fail(d, Errno.EBADMSG, $"the source sent {declared} bytes for this device, {received} arrived");
                        _ended[d] = true;
                        break;
                    case MigrationFrameType.End:
                        int missing = Array.IndexOf(_ended, false);
                        if (missing >= 0)
                            throw Fail(-1, Errno.EPROTO, $"the stream ended before device {missing} did");
                        return;
                    case MigrationFrameType.Abort:
                        throw SourceAborted(frame);
                    default:
                        throw Fail(-1, Errno.EPROTO, $"unexpected {frame}");
                }
                Report(null);
            }
        }

        private async Task ValidateAsync(CancellationToken token)
        {
            Enter(MigrationPhase.Validate);
            for (int i = 0; i < _count; i++)
            {
                try
                {
                    await _devices[i].SetStateAsync(VfioMigrationState.Stop, token).ConfigureAwait(false);
                }
                catch (VfioException ex)
                {
                    await _writer.WriteStatusAsync(MigrationFrameType.LoadResult, (ushort)i, new MigrationStatus(ex.Errno, (byte)_phase, ex.Detail is null ? ex.Message : $"{ex.Operation}: {ex.Detail}"), token).ConfigureAwait(false);
                    throw Fail(i, ex.Errno, $"RESUMING>STOP rejected the loaded state: {ex.Detail ?? ex.Message}", ex);
                }
                await _writer.WriteStatusAsync(MigrationFrameType.LoadResult, (ushort)i, new MigrationStatus(Errno.None, (byte)_phase, "loaded and validated"), token).ConfigureAwait(false);
            }
        }

        private async Task StartAsync(CancellationToken token)
        {
            Enter(MigrationPhase.Start);
            // All P2P-capable devices reach RUNNING_P2P before any device fully runs.
            for (int i = 0; i < _count; i++)
            {
                if ((_caps[i] & VfioMigrationFlags.P2P) != 0)
                    await DeviceAsync(i, "SET device_state RUNNING_P2P", d => d.SetStateAsync(VfioMigrationState.RunningP2P, token)).ConfigureAwait(false);
            }
            for (int i = 0; i < _count; i++)
                await DeviceAsync(i, "SET device_state RUNNING", d => d.SetStateAsync(VfioMigrationState.Running, token)).ConfigureAwait(false);
        }

        private async Task WriteDeviceAsync(int d, MigrationFrame frame, CancellationToken token)
        {
            var stream = _streams[d]!;
            foreach (var segment in frame.Payload)
            {
                try
                {
                    await stream.WriteAsync(segment, token).ConfigureAwait(false);
                }
                catch (VfioException ex)
                {
                    throw Fail(d, ex.Errno, $"write migration data: {ex.Detail ?? ex.Message}", ex);
                }
            }
        }

        private async Task<MigrationFrame> NextFrameAsync(CancellationToken token)
        {
            MigrationFrame? frame;
            try
            {
                frame = await _reader.ReadFrameAsync(token).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                throw Fail(-1, ex.Errno, "migration stream: " + (ex.Detail ?? ex.Message), ex);
            }
            return frame ?? throw Fail(-1, Errno.EPIPE, $"the migration stream ended during {MigrationException.PhaseName(_phase)}, before its End frame");
        }

        private static MigrationException SourceAborted(MigrationFrame frame)
        {
            var status = MigrationFrameCodec.ReadStatus(frame.Payload);
            return new MigrationException(MigrationSide.Source, (MigrationPhase)status.Phase, -1, null, status.Errno, "the source aborted the migration: " + status.Message);
        }

        private Exception Normalize(Exception ex, CancellationToken token) => ex switch
        {
            MigrationException => ex,
            OperationCanceledException when token.IsCancellationRequested => ex,
            VfioException v => Fail(-1, v.Errno, v.Detail ?? v.Message, v),
            _ => Fail(-1, Errno.EIO, ex.Message, ex),
        };

        private async Task<IReadOnlyList<string>> ResetTouchedAsync()
        {
            await DisposeStreamsAsync().ConfigureAwait(false);
            var errors = new List<string>();
            for (int i = 0; i < _count; i++)
            {
                if (!_touched[i])
                    continue;
                try
                {
                    // Abandoning a load (or a half-started device) needs a reset (spec §2.7).
                    await _devices[i].ResetAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (VfioException ex)
                {
                    errors.Add($"destination device {i} ({_devices[i].Name}): reset failed: {ex.Message}");
                }
            }
            return errors;
        }

        private async Task NotifyErrorAsync(Exception failure)
        {
            var status = failure is MigrationException m
                ? new MigrationStatus(m.Errno, (byte)m.Phase, m.Detail ?? m.Message)
                : new MigrationStatus(Errno.ECANCELED, (byte)_phase, "the destination canceled the migration");
            int device = failure is MigrationException { DeviceIndex: >= 0 } md ? md.DeviceIndex : MigrationFrame.StreamLevel;
            using var timeout = new CancellationTokenSource(_options.FailureNoticeTimeout);
            try
            {
                await _writer.WriteStatusAsync(MigrationFrameType.Error, (ushort)device, status, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is VfioException or OperationCanceledException or InvalidOperationException)
            {
                // The source is gone; it will see the streams end.
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

        private void Enter(MigrationPhase phase)
        {
            _phase = phase;
            _trace.Phase(phase);
        }

        private MigrationException Fail(int i, Errno errno, string detail, Exception? inner = null)
            => new(MigrationSide.Destination, _phase, i, i >= 0 ? _devices[i].Name : null, errno, detail, inner);

        private void Report(string? message, bool force = false)
        {
            if (_progress is null)
                return;
            var now = _clock.Elapsed;
            if (!force && now - _lastProgress < _options.ProgressInterval)
                return;
            _lastProgress = now;
            _progress.Report(new MigrationProgress
            {
                Side = MigrationSide.Destination,
                Phase = _phase,
                PreCopyBytes = _preCopyBytes.Sum(),
                StopCopyBytes = _stopCopyBytes.Sum(),
                AcksReceived = _acked.Count(a => a),
                AcksExpected = _setups.Count(s => (s.Plan & MigrationPlanFlags.PreCopy) != 0),
                Elapsed = now,
                Message = message,
            });
        }

        private MigrationStatistics BuildStatistics()
        {
            var devices = new DeviceMigrationStatistics[_count];
            for (int i = 0; i < _count; i++)
                devices[i] = new DeviceMigrationStatistics(i, _devices[i].Name, _caps[i], _preCopyBytes[i], _stopCopyBytes[i], _acked[i]);
            var stopCopyTime = _switchover ? _clock.Elapsed - _switchoverAt - _startTime : TimeSpan.Zero;
            return new MigrationStatistics
            {
                MigrationId = _id,
                Side = MigrationSide.Destination,
                DeviceCount = _count,
                PreCopyUsed = _count > 0 && (_setups[0].Plan & MigrationPlanFlags.PreCopy) != 0,
                P2PUsed = _count > 0 && (_setups[0].Plan & MigrationPlanFlags.P2P) != 0,
                PreCopyBytes = _preCopyBytes.Sum(),
                StopCopyBytes = _stopCopyBytes.Sum(),
                SetupTime = _setupTime,
                PreCopyTime = _switchover ? _switchoverAt - _setupTime : TimeSpan.Zero,
                StopCopyTime = stopCopyTime < TimeSpan.Zero ? TimeSpan.Zero : stopCopyTime,
                DestinationStartTime = _startTime,
                Downtime = _switchover ? _clock.Elapsed - _switchoverAt : TimeSpan.Zero,
                TotalTime = _clock.Elapsed,
                Devices = devices,
                Warnings = _warnings.ToArray(),
            };
        }
    }
}
