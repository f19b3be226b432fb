using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// One run of <see cref="MigrationDestination"/>: reads the forward stream into one <see cref="DestinationDevice"/>
/// per device (setup, load, validate) and writes the return path. The commit decision, the start and recovery
/// are in DestinationRun.Outcome.cs.
/// </summary>
internal sealed partial class DestinationRun
{
    private const uint ReturnMaxPayload = 4096;
    private readonly MigrationRunContext _run;
    private readonly PipeReader _input;
    private readonly PipeWriter _returnPipe;
    private readonly MigrationStreamWriter _writer;
    private readonly MigrationStreamReader _reader;
    private readonly DestinationDevice[] _devices;
    private TimeSpan _startTime;

    // The End frame arrived: a stream that stops after it stopped before the Commit, not inside the data.
    private bool _endSeen;

    // The source's Switchover frame arrived.
    private bool SwitchedOver => _run.SwitchoverAt is not null;

    public DestinationRun(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, PipeReader input, PipeWriter returnPath, IProgress<MigrationProgress>? progress)
    {
        _run = new MigrationRunContext(MigrationSide.Destination, devices, options, progress, options.LoggerFactory.CreateLogger<MigrationDestination>());
        _input = input;
        _returnPipe = returnPath;
        _writer = new MigrationStreamWriter(returnPath, MigrationStreamKind.Return, (ushort)_run.Count, ReturnMaxPayload) { OnFrame = (t, d, n) => _run.Trace.Frame(true, t, d, n) };
        _reader = new MigrationStreamReader(input, MigrationStreamKind.Forward, (uint)Math.Max(options.BufferBytes, (int)MigrationFrameCodec.DefaultMaxPayload)) { OnFrame = (t, d, n) => _run.Trace.Frame(false, t, d, n) };
        _devices = [.. Enumerable.Range(0, _run.Count).Select(i => new DestinationDevice(i, _run))];
    }

    public async Task<MigrationStatistics> ExecuteAsync(CancellationToken token)
    {
        try
        {
            return await RunAsync(token).ConfigureAwait(false);
        }
        finally
        {
            await DiscardCommitDecisionAsync().ConfigureAwait(false);
            await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
            await PipeCompletion.CompleteQuietlyAsync(_returnPipe).ConfigureAwait(false);
            _reader.ReleaseChunk();
            await PipeCompletion.CompleteQuietlyAsync(_input).ConfigureAwait(false);
            _run.Trace.End();
        }
    }

    // ---- Setup ----------------------------------------------------------------------------

    private async Task SetupAsync(CancellationToken token)
    {
        var preamble = await _reader.ReadPreambleAsync(token).ConfigureAwait(false);
        if (preamble.DeviceCount != _run.Count)
            throw _run.Fail(-1, Errno.EINVAL, $"the source migrates {preamble.DeviceCount} device(s), this destination has {_run.Count}");
        var begin = await NextFrameAsync(token).ConfigureAwait(false);
        if (begin.Type == MigrationFrameType.Abort)
            throw SourceAborted(begin);
        if (begin.Type != MigrationFrameType.Begin)
            throw _run.Fail(-1, Errno.EPROTO, $"expected the Begin frame, got {begin}");
        var id = MigrationFrameCodec.ReadMigrationId(begin.Payload);
        if (id == Guid.Empty)
            throw _run.Fail(-1, Errno.EPROTO, "the Begin frame carries the empty migration id");
        var earlier = await _run.Store.ReadDecisionAsync(id, token).ConfigureAwait(false);
        if (earlier is not null)
            throw _run.Fail(-1, Errno.EEXIST, $"migration {id} was already decided {earlier.Decision.ToString().ToLowerInvariant()}; a migration id is used once");
        _run.Id = id;
        _run.Trace.Begin(id);
        await _run.WriteRecordAsync(MigrationRecordStatus.Begun, "migrating", token).ConfigureAwait(false);
        foreach (var device in _devices)
        {
            var frame = await NextFrameAsync(token).ConfigureAwait(false);
            if (frame.Type == MigrationFrameType.Abort)
                throw SourceAborted(frame);
            if (frame.Type != MigrationFrameType.Setup || frame.Device != device.Index)
                throw _run.Fail(-1, Errno.EPROTO, $"expected the Setup frame of device {device.Index}, got {frame}");
            device.Setup = MigrationFrameCodec.ReadSetup(frame.Payload);
            if ((device.Setup.Plan & MigrationPlanFlags.Profile) != 0)
                device.Profile = await ReadProfileAsync(device, token).ConfigureAwait(false);
        }
        // Devices left mid-migration are reset first: a stopped vfio-user device answers no region queries.
        await PrepareDevicesAsync(token).ConfigureAwait(false);
        await CheckCompatibilityAsync(token).ConfigureAwait(false);
        foreach (var device in _devices)
            await device.CheckCapabilitiesAsync(_run.Count, token).ConfigureAwait(false);
        foreach (var device in _devices)
        {
            device.Touched = true;
            var stream = await device.CallAsync("SET device_state RESUMING", d => d.SetStateAsync(VfioMigrationState.Resuming, token)).ConfigureAwait(false);
            device.Stream = stream ?? throw device.Fail(Errno.EPROTO, "STOP>RESUMING opened no resuming stream");
        }
        await PrepareCommitDecisionAsync(token).ConfigureAwait(false);
        foreach (var device in _devices)
            await _writer.WriteUInt64Async(MigrationFrameType.Ready, (ushort)device.Index, (ulong)device.Caps, token).ConfigureAwait(false);
        var plan = _devices[0].Setup.Plan;
        _run.Enter((plan & MigrationPlanFlags.PreCopy) != 0 ? MigrationPhase.PreCopy : MigrationPhase.Switchover);
        EngineLog.Starting(_run.Log, MigrationSide.Destination, _run.Count, (plan & MigrationPlanFlags.PreCopy) != 0, (plan & MigrationPlanFlags.P2P) != 0);
        Report("destination devices in RESUMING", force: true);
    }

    private async Task<Compat.MigrationProfile> ReadProfileAsync(DestinationDevice device, CancellationToken token)
    {
        var frame = await NextFrameAsync(token).ConfigureAwait(false);
        if (frame.Type == MigrationFrameType.Abort)
            throw SourceAborted(frame);
        if (frame.Type != MigrationFrameType.Profile || frame.Device != device.Index)
            throw _run.Fail(-1, Errno.EPROTO, $"expected the Profile frame of device {device.Index} after its Setup, got {frame}");
        var bytes = System.Buffers.BuffersExtensions.ToArray(frame.Payload);
        try
        {
            return Compat.MigrationProfileJson.Decode(bytes);
        }
        catch (VfioException ex)
        {
            throw device.Fail(ex.Errno, $"the source's profile: {ex.Detail ?? ex.Message}", ex);
        }
    }

    // A device left mid-migration (RESUMING, STOP, …) by an earlier, interrupted migration is reset first,
    // unless an unresolved committed migration names it: then it holds the only live copy of that state.
    private async Task PrepareDevicesAsync(CancellationToken token)
    {
        IReadOnlyList<MigrationRecord>? records = null;
        foreach (var device in _devices)
        {
            var state = await device.CallAsync("GET device_state", d => d.GetStateAsync(token)).ConfigureAwait(false);
            if (state == VfioMigrationState.Running)
                continue;
            records ??= await ListRecordsAsync(token).ConfigureAwait(false);
            foreach (var r in records)
            {
                if (r.Side != MigrationSide.Destination || !r.IsUnresolved || !r.Devices.Contains(device.Name))
                    continue;
                var decision = await _run.Store.ReadDecisionAsync(r.Id, token).ConfigureAwait(false);
                if (decision?.Decision == MigrationDecision.Committed)
                    throw device.Fail(Errno.EBUSY, $"the device is in {MigrationStateMachine.Name(state)} holding the committed state of migration {r.Id}; run 'vfio-mig resolve {r.Id}' first");
            }
            EngineLog.ResetBeforeMigration(_run.Log, device.Index, device.Name, MigrationStateMachine.Name(state));
            Report($"destination device {device.Index} ({device.Name}) was in {MigrationStateMachine.Name(state)}: reset before the migration", force: true);
            await device.CallAsync("VFIO_DEVICE_RESET", async d =>
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
            return await _run.Store.ListRecordsAsync(token).ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            throw _run.Fail(-1, ex.Errno, $"read the migration records: {ex.Detail ?? ex.Message}", ex);
        }
    }

    // Pre-flight compatibility (docs/compatibility.md): every device pair, every reason, before any device is
    // touched here and before Ready lets any source device leave RUNNING.
    private async Task CheckCompatibilityAsync(CancellationToken token)
    {
        if (!_run.Options.CheckCompatibility)
            return;
        var reasons = new List<string>();
        int first = -1;
        foreach (var device in _devices)
        {
            int i = device.Index;
            if (device.Profile is not { } source)
            {
                _run.Warnings.Add($"device {i}: the source sent no profile (its compatibility check is off); not checked");
                continue;
            }
            var mine = await device.CallAsync("read the migration profile", d => d.GetProfileAsync(token)).ConfigureAwait(false);
            var report = Compat.CompatibilityCheck.Check(source, mine, device.PreCopied, _run.Count);
            EngineLog.Compatibility(_run.Log, i, report.Compatible, report.Reasons.Count);
            if (report.Compatible)
                continue;
            first = first < 0 ? i : first;
            reasons.AddRange(report.Reasons.Select(r => _run.Count > 1 ? $"device {i}: {r.Message}" : r.Message));
        }
        _run.Trace.Compatibility(reasons.Count == 0, reasons);
        if (reasons.Count > 0)
            throw _run.Fail(reasons.Count == 1 || _run.Count == 1 ? first : -1, Errno.EOPNOTSUPP, $"incompatible ({reasons.Count} reason{(reasons.Count == 1 ? "" : "s")}): {string.Join("; ", reasons)}");
    }

    // ---- Load and validate ----------------------------------------------------------------

    private async Task LoadAsync(CancellationToken token)
    {
        while (true)
        {
            var frame = await NextFrameAsync(token).ConfigureAwait(false);
            var device = frame.IsStreamLevel ? null : _devices[frame.Device];
            switch (frame.Type)
            {
                case MigrationFrameType.PreCopyData:
                    if (SwitchedOver || !device!.PreCopied)
                        throw _run.Fail(-1, Errno.EPROTO, $"{frame} outside pre-copy");
                    await device.WriteAsync(frame, token).ConfigureAwait(false);
                    device.PreCopyBytes += frame.Length;
                    break;
                case MigrationFrameType.InitDataSent:
                    if (SwitchedOver || !device!.PreCopied)
                        throw _run.Fail(-1, Errno.EPROTO, $"{frame}: device {frame.Device} is not pre-copied or the switchover already began");
                    // Every initial byte arrived in order before the marker and was written: acknowledge.
                    device.Acked = true;
                    await _writer.WriteFrameAsync(MigrationFrameType.InitDataAck, (ushort)device.Index, default, token).ConfigureAwait(false);
                    break;
                case MigrationFrameType.Switchover:
                    if (SwitchedOver)
                        throw _run.Fail(-1, Errno.EPROTO, $"a second {frame}");
                    _run.SwitchoverBegins();
                    _run.Enter(MigrationPhase.StopCopy);
                    Report("source switching over", force: true);
                    break;
                case MigrationFrameType.StopCopyData:
                    if (!SwitchedOver || device!.Ended)
                        throw _run.Fail(-1, Errno.EPROTO, SwitchedOver ? $"{frame} after device {frame.Device} ended" : $"{frame} before the switchover");
                    await device.WriteAsync(frame, token).ConfigureAwait(false);
                    device.StopCopyBytes += frame.Length;
                    break;
                case MigrationFrameType.DeviceEnd:
                    if (!SwitchedOver || device!.Ended)
                        throw _run.Fail(-1, Errno.EPROTO, $"unexpected {frame}");
                    device.End(MigrationFrameCodec.ReadUInt64(frame.Payload));
                    break;
                case MigrationFrameType.End:
                    var missing = _devices.FirstOrDefault(d => !d.Ended);
                    if (missing is not null)
                        throw _run.Fail(-1, Errno.EPROTO, $"the stream ended before device {missing.Index} did");
                    _endSeen = true;
                    return;
                case MigrationFrameType.Abort:
                    throw SourceAborted(frame);
                default:
                    throw _run.Fail(-1, Errno.EPROTO, $"unexpected {frame}");
            }
            Report(null);
        }
    }

    private async Task ValidateAsync(CancellationToken token)
    {
        _run.Enter(MigrationPhase.Validate);
        foreach (var device in _devices)
        {
            try
            {
                await device.Device.SetStateAsync(VfioMigrationState.Stop, token).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                await _writer.WriteStatusAsync(MigrationFrameType.LoadResult, (ushort)device.Index, new MigrationStatus(ex.Errno, (byte)_run.Phase, ex.Detail is null ? ex.Message : $"{ex.Operation}: {ex.Detail}"), token).ConfigureAwait(false);
                throw device.Fail(ex.Errno, $"RESUMING>STOP rejected the loaded state: {ex.Detail ?? ex.Message}", ex);
            }
            await _writer.WriteStatusAsync(MigrationFrameType.LoadResult, (ushort)device.Index, new MigrationStatus(Errno.None, (byte)_run.Phase, "loaded and validated"), token).ConfigureAwait(false);
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
            throw _run.Fail(-1, ex.Errno, "migration stream: " + (ex.Detail ?? ex.Message), ex);
        }
        string where = _endSeen ? "after its End frame and before the source's Commit" : "before its End frame";
        return frame ?? throw _run.Fail(-1, Errno.EPIPE, $"the migration stream ended during {MigrationException.PhaseName(_run.Phase)}, {where}");
    }

    private static MigrationException SourceAborted(MigrationFrame frame)
    {
        var status = MigrationFrameCodec.ReadStatus(frame.Payload);
        return new MigrationException(MigrationSide.Source, (MigrationPhase)status.Phase, -1, null, status.Errno, "the source aborted the migration: " + status.Message);
    }

    private void Report(string? message, bool force = false)
    {
        if (!_run.ProgressDue(message, force))
            return;
        _run.Publish(new MigrationProgress
        {
            PreCopyBytes = _devices.Sum(d => d.PreCopyBytes),
            StopCopyBytes = _devices.Sum(d => d.StopCopyBytes),
            AcksReceived = _devices.Count(d => d.Acked),
            AcksExpected = _devices.Count(d => d.PreCopied),
        }, message);
    }
}
