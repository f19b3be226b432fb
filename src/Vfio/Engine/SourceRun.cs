using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// One run of <see cref="MigrationSource"/>: the main loop (setup, pre-copy rounds, switchover, stop-copy, commit)
/// over one <see cref="SourceDevice"/> per device, writing the forward stream, while a
/// <see cref="SourceReturnPath"/> reads the destination's answers. Its outcome and recovery are in SourceRun.Outcome.cs.
/// </summary>
internal sealed partial class SourceRun
{
    private readonly MigrationRunContext _run;
    private readonly PipeWriter _output;
    private readonly PipeReader _returnPipe;
    private readonly MigrationStreamWriter _writer;
    private readonly SourceDevice[] _devices;
    private readonly SourceReturnPath _returnPath;
    private readonly ConvergenceModel _convergence;
    private readonly PreCopyMeter _meter = new();
    private bool _preCopy;
    private bool _p2p;
    private long _pending;
    private long _threshold;
    private bool _forced;
    private TimeSpan _stopCopyTime;
    private TimeSpan _downtime;
    private TimeSpan _destinationStart;

    public SourceRun(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, PipeWriter output, PipeReader returnPath, IProgress<MigrationProgress>? progress)
    {
        _run = new MigrationRunContext(MigrationSide.Source, devices, options, progress, options.LoggerFactory.CreateLogger<MigrationSource>());
        _output = output;
        _returnPipe = returnPath;
        _writer = new MigrationStreamWriter(output, MigrationStreamKind.Forward, (ushort)_run.Count, (uint)options.BufferBytes) { OnFrame = (t, d, n) => _run.Trace.Frame(true, t, d, n) };
        _devices = [.. Enumerable.Range(0, _run.Count).Select(i => new SourceDevice(i, _run))];
        _returnPath = new SourceReturnPath(_run, returnPath, _devices);
        _convergence = new ConvergenceModel(options.DowntimeLimit, options.BufferBytes);
        _run.Id = options.MigrationId == Guid.Empty ? Guid.NewGuid() : options.MigrationId;
        _run.Trace.Begin(_run.Id);
    }

    private int AckCount => _devices.Count(d => d.InitialDataAcknowledged);

    public async Task<MigrationStatistics> ExecuteAsync(CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // The return path is read until the end, even after the caller cancels: a Complete that is
        // already on its way decides whether the sources may restart.
        using var returnCts = new CancellationTokenSource();
        var token = cts.Token;
        Task? returnLoop = null;
        try
        {
            await _run.WriteRecordAsync(MigrationRecordStatus.Begun, "migrating", token).ConfigureAwait(false);
            await SetupAsync(token).ConfigureAwait(false);
            returnLoop = _returnPath.StartAsync(_preCopy, cts, returnCts.Token);
            await _returnPath.Ready.WaitAsync(token).ConfigureAwait(false);
            if (_preCopy)
                await _convergence.MeasureDevicesAsync(_run.Devices, _p2p, token).ConfigureAwait(false);
            CheckDestinationCaps();
            _run.SetupDone();
            Report("destination ready");

            if (_preCopy)
                await PreCopyAsync(token).ConfigureAwait(false);
            await SwitchoverAsync(token).ConfigureAwait(false);
            await StopCopyAsync(token).ConfigureAwait(false);
            _stopCopyTime = _run.SinceSwitchover;

            _run.Enter(MigrationPhase.Validate);
            Report("waiting for the destination to load and validate");
            await WaitForDestinationAsync(_returnPath.Loaded, "the destination did not report its devices loaded within {0:0.#} s after the stream ended", token).ConfigureAwait(false);

            // Every device is loaded. From this instant the sources never restart by themselves: a Commit
            // written even in part may arrive, and only the destination's answer says whether it did.
            _returnPath.MarkCommitSent();
            await _writer.WriteFrameAsync(MigrationFrameType.Commit, MigrationFrame.StreamLevel, default, token).ConfigureAwait(false);
            _run.Enter(MigrationPhase.Start);
            Report("committed; waiting for the destination to start its devices");
            await WaitForDestinationAsync(_returnPath.Complete, "no answer to the Commit within {0:0.#} s", token).ConfigureAwait(false);
            await _run.CheckpointAsync(MigrationCheckpoint.Started, token).ConfigureAwait(false);
            return await FinishCommittedAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (_returnPath.CommitSent)
        {
            return await UnknownWindowAsync(ex).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            return await AbortAsync(ex, returnLoop, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
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
            await PipeCompletion.CompleteQuietlyAsync(_returnPipe).ConfigureAwait(false);
            _returnPath.Detach();
            _run.Trace.End();
        }
    }

    // The commit's waits are bounded by CommitTimeout; the format names the seconds.
    private async Task WaitForDestinationAsync(Task answer, [StringSyntax(StringSyntaxAttribute.CompositeFormat)] string timeoutFormat, CancellationToken token)
    {
        try
        {
            await answer.WaitAsync(_run.Options.CommitTimeout, token).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new VfioException(Errno.ETIMEDOUT, "commit", string.Format(System.Globalization.CultureInfo.InvariantCulture, timeoutFormat, _run.Options.CommitTimeout.TotalSeconds));
        }
    }

    // ---- Setup ----------------------------------------------------------------------------

    private async Task SetupAsync(CancellationToken token)
    {
        _run.Enter(MigrationPhase.Setup);
        foreach (var device in _devices)
            await device.ProbeAsync(token).ConfigureAwait(false);

        var profiles = new Compat.MigrationProfile?[_run.Count];
        if (_run.Options.CheckCompatibility)
        {
            foreach (var device in _devices)
                profiles[device.Index] = await device.CallAsync("read the migration profile", d => d.GetProfileAsync(token)).ConfigureAwait(false);
        }

        bool allPreCopy = _devices.All(d => (d.Caps & VfioMigrationFlags.PreCopy) != 0);
        bool allP2P = _devices.All(d => d.HasP2P);
        if (_run.Count > 1 && !allP2P)
        {
            var lacking = _devices.First(d => !d.HasP2P);
            throw lacking.Fail(Errno.EOPNOTSUPP, $"{_run.Count} devices migrate together, but this one lacks P2P (caps {MigrationStateMachine.FormatCaps(lacking.Caps)}); stopping them one by one could let a running device DMA into a stopped one");
        }
        _preCopy = _run.Options.UsePreCopy && allPreCopy;
        _p2p = allP2P;
        if (_preCopy)
            await EnablePrecopyInfoV2Async(token).ConfigureAwait(false);
        EngineLog.Starting(_run.Log, MigrationSide.Source, _run.Count, _preCopy, _p2p);

        await _writer.WritePreambleAsync(token).ConfigureAwait(false);
        var id = new byte[MigrationFrameCodec.MigrationIdSize];
        MigrationFrameCodec.WriteMigrationId(id, _run.Id);
        await _writer.WriteFrameAsync(MigrationFrameType.Begin, MigrationFrame.StreamLevel, id, token).ConfigureAwait(false);
        var plan = (_preCopy ? MigrationPlanFlags.PreCopy : 0) | (_p2p ? MigrationPlanFlags.P2P : 0);
        foreach (var device in _devices)
        {
            var profile = profiles[device.Index];
            var setup = new MigrationDeviceSetup(device.Caps, device.StopCopySize, plan | (profile is null ? 0 : MigrationPlanFlags.Profile), device.Name);
            await _writer.WriteSetupAsync((ushort)device.Index, setup, token).ConfigureAwait(false);
            if (profile is not null)
                await _writer.WriteFrameAsync(MigrationFrameType.Profile, (ushort)device.Index, EncodeProfile(device, profile), token).ConfigureAwait(false);
        }
    }

    private static byte[] EncodeProfile(SourceDevice device, Compat.MigrationProfile profile)
    {
        try
        {
            return Compat.MigrationProfileJson.Encode(profile);
        }
        catch (VfioException ex)
        {
            throw device.Fail(ex.Errno, ex.Detail ?? ex.Message, ex);
        }
    }

    // Spec §4.7 (vmm-side §1.1 step 3): opt in to precopy-info v2 where the device offers it, so a REINIT flag
    // is the device's word and not an echo. A device that does not offer it migrates as before; any other
    // failure fails the setup, while every source still runs untouched.
    private async Task EnablePrecopyInfoV2Async(CancellationToken token)
    {
        foreach (var device in _devices)
            device.PrecopyInfoV2 = await device.CallAsync("SET MIG_PRECOPY_INFOv2", d => d.TryEnablePrecopyInfoV2Async(token)).ConfigureAwait(false);
    }

    private void CheckDestinationCaps()
    {
        foreach (var device in _devices)
        {
            var d = device.DestinationCaps;
            if (_preCopy && (d & VfioMigrationFlags.PreCopy) == 0)
                throw device.Fail(Errno.EOPNOTSUPP, $"the source will pre-copy, but destination device {device.Index} lacks PRE_COPY (caps {MigrationStateMachine.FormatCaps(d)})");
            if (_run.Count > 1 && (d & VfioMigrationFlags.P2P) == 0)
                throw device.Fail(Errno.EOPNOTSUPP, $"destination device {device.Index} lacks P2P (caps {MigrationStateMachine.FormatCaps(d)}), required when several devices migrate together");
        }
    }

    // ---- Pre-copy -------------------------------------------------------------------------

    private async Task PreCopyAsync(CancellationToken token)
    {
        _run.Enter(MigrationPhase.PreCopy);
        foreach (var device in _devices)
        {
            device.Touched = true;
            var stream = await device.CallAsync("SET device_state PRE_COPY", d => d.SetStateAsync(VfioMigrationState.PreCopy, token)).ConfigureAwait(false);
            device.Stream = stream ?? throw device.Fail(Errno.EPROTO, "RUNNING>PRE_COPY opened no saving stream");
        }
        Report("sources in PRE_COPY");
        await _run.CheckpointAsync(MigrationCheckpoint.PreCopy, token).ConfigureAwait(false);

        var start = _run.Elapsed;
        while (true)
        {
            _meter.BeginRound();
            long roundBytes = 0;
            foreach (var device in _devices)
                roundBytes += await PreCopyDeviceAsync(device, token).ConfigureAwait(false);
            _meter.EndRound(roundBytes);

            _pending = await PendingBytesAsync(token).ConfigureAwait(false);
            _convergence.SetTransfer(_meter.MovedBytes, _meter.ActiveTime);
            _threshold = _convergence.ThresholdBytes;
            bool small = _convergence.Decide(_pending) == ConvergenceDecision.SwitchOver;
            EngineLog.Round(_run.Log, _meter.Round, roundBytes, _pending, _threshold, _meter.BandwidthBytesPerSecond, AckCount, _run.Count);
            _run.Trace.Round(_meter.Round, roundBytes, _pending, _threshold, _meter.BandwidthBytesPerSecond, AckCount);
            Report(null, force: true);

            if (small && (!_run.Options.RequireSwitchoverAck || AckCount == _run.Count))
                return;
            while (small && _run.Options.RequireSwitchoverAck && AckCount < _run.Count)
            {
                // Converged but a destination has not acknowledged its initial data yet: wait a little, then
                // run another round (the device kept dirtying while we waited, so the pending figure is stale).
                if (_run.Elapsed - start >= _run.Options.MaxPreCopyTime)
                    break;
                int before = AckCount;
                for (int waited = 0; waited < 50 && AckCount == before; waited += 2)
                    await Task.Delay(2, token).ConfigureAwait(false);
                if (AckCount == before)
                    break;
            }

            var elapsed = _run.Elapsed - start;
            if (_meter.Round >= _run.Options.MaxRounds || elapsed >= _run.Options.MaxPreCopyTime)
            {
                // Out of rounds while they still shrank the stop-copy: within the limit is good enough.
                if (_convergence.IsWithinLimit(_pending) && (!_run.Options.RequireSwitchoverAck || AckCount == _run.Count))
                    return;
                var report = _convergence.Report(_meter.Round, elapsed, _pending, _run.Count - AckCount);
                if (_run.Options.NonConvergence == NonConvergencePolicy.ForceSwitchover)
                {
                    _forced = true;
                    Report("forced switchover: " + report);
                    return;
                }
                throw new MigrationException(MigrationSide.Source, MigrationPhase.PreCopy, -1, null, Errno.ETIMEDOUT, report.ToString(), convergence: report);
            }
            if (roundBytes == 0 && _run.Options.IdleRoundDelay > TimeSpan.Zero)
                await Task.Delay(_run.Options.IdleRoundDelay, token).ConfigureAwait(false);
        }
    }

    // One round for one device: read what PRECOPY_INFO says is there (at least one read), bounded so a
    // device that dirties faster than we read cannot hold the round forever.
    private async Task<long> PreCopyDeviceAsync(SourceDevice device, CancellationToken token)
    {
        var stream = device.Stream!;
        var info = await QueryPrecopyAsync(device, token).ConfigureAwait(false);
        ulong budget = Math.Max(1, info.InitialBytes + info.DirtyBytes);
        long moved = 0;
        while ((ulong)moved < budget)
        {
            int n = await ReadIntoFrameAsync(device, stream, MigrationFrameType.PreCopyData, allowNoData: true, token).ConfigureAwait(false);
            if (n == 0)
                break;
            moved += n;
            device.PreCopyBytes += n;
            if (_run.ReportsProgress)
            {
                _meter.Update(moved);
                Report(null);
            }
        }
        if (!device.InitSent)
        {
            var after = await QueryPrecopyAsync(device, token).ConfigureAwait(false);
            if (after.InitialBytes == 0)
            {
                device.MarkInitDataSent();
                await _writer.WriteFrameAsync(MigrationFrameType.InitDataSent, (ushort)device.Index, default, token).ConfigureAwait(false);
            }
        }
        return moved;
    }

    // VFIO_MIG_GET_PRECOPY_INFO. REINIT (new initial data appeared, spec §4.7) means the initial data must be
    // sent and acknowledged again before the switchover. Without the v2 opt-in the flag is an echo: ignored.
    private async Task<Device.PrecopyEstimate> QueryPrecopyAsync(SourceDevice device, CancellationToken token)
    {
        var stream = device.Stream!;
        var info = await device.CallAsync("VFIO_MIG_GET_PRECOPY_INFO", _ => stream.GetPrecopyInfoAsync(token)).ConfigureAwait(false);
        if (info.Reinit && device.PrecopyInfoV2)
        {
            bool takenBack = device.Reinit();
            EngineLog.Reinit(_run.Log, device.Index, info.InitialBytes, takenBack);
            _run.Trace.Reinit(device.Index, info.InitialBytes);
            if (takenBack)
                Report($"device {device.Index} reported REINIT: its new initial data needs a new switchover-ack", force: true);
        }
        return info;
    }

    // The switchover's last look (vmm-side §1.4, as QEMU 11.1): a device still pre-copying that reports REINIT
    // now, or whose query fails, has initial data the destination never acknowledged, and no ack may be asked
    // for after the switchover decision: the migration fails and the sources run on.
    private async Task CheckNoReinitAtSwitchoverAsync(CancellationToken token)
    {
        if (!_preCopy || _forced || !_run.Options.RequireSwitchoverAck)
            return;
        foreach (var device in _devices)
        {
            if (!device.PrecopyInfoV2 || device.Stream is not { } stream)
                continue;
            string why;
            try
            {
                var info = await stream.GetPrecopyInfoAsync(token).ConfigureAwait(false);
                if (!info.Reinit)
                    continue;
                device.CountReinit();
                why = $"reported REINIT ({info.InitialBytes} new initial bytes)";
            }
            catch (VfioException ex)
            {
                why = $"could not be asked for REINIT ({ex.Message}), so a re-init is assumed";
            }
            throw device.Fail(Errno.EAGAIN, $"at the switchover the device {why}: its new initial data was never acknowledged by the destination and no switchover-ack may be requested after the switchover decision; the migration may be retried");
        }
    }

    // Sum over devices of what the switchover would still move: max(stop-copy size, initial + dirty),
    // so nothing is counted twice whether or not the device's stop-copy estimate includes the dirty bytes.
    private async Task<long> PendingBytesAsync(CancellationToken token)
    {
        ulong total = 0;
        foreach (var device in _devices)
        {
            var info = await QueryPrecopyAsync(device, token).ConfigureAwait(false);
            ulong pre = info.InitialBytes + info.DirtyBytes;
            ulong stop = await device.StopCopySizeNowAsync(token).ConfigureAwait(false);
            total += Math.Max(pre, stop);
        }
        return (long)Math.Min(total, long.MaxValue / 2);
    }

    // ---- Switchover and stop-copy ---------------------------------------------------------

    private async Task SwitchoverAsync(CancellationToken token)
    {
        _run.Enter(MigrationPhase.Switchover);
        EngineLog.Switchover(_run.Log, _meter.Round, _pending, _threshold, _forced);
        _run.Trace.Switchover(_meter.Round, _pending, _threshold, _meter.BandwidthBytesPerSecond, _forced, _convergence);
        Report(_forced ? "switchover (forced)" : "switchover");
        await _writer.WriteFrameAsync(MigrationFrameType.Switchover, MigrationFrame.StreamLevel, default, token).ConfigureAwait(false);
        _run.SwitchoverBegins();
        if (_p2p)
        {
            // Every device stops initiating P2P before any device stops.
            var quiet = _preCopy ? VfioMigrationState.PreCopyP2P : VfioMigrationState.RunningP2P;
            foreach (var device in _devices)
            {
                device.Touched = true;
                await device.CallAsync($"SET device_state {MigrationStateMachine.Name(quiet)}", d => d.SetStateAsync(quiet, token)).ConfigureAwait(false);
            }
        }
        await CheckNoReinitAtSwitchoverAsync(token).ConfigureAwait(false);
        foreach (var device in _devices)
        {
            device.Touched = true;
            var stream = await device.CallAsync("SET device_state STOP_COPY", d => d.SetStateAsync(VfioMigrationState.StopCopy, token)).ConfigureAwait(false);
            if (stream is not null)
            {
                // Without pre-copy STOP>STOP_COPY opens the stream; after pre-copy the same stream continues.
                if (device.Stream is { } old)
                    await old.DisposeAsync().ConfigureAwait(false);
                device.Stream = stream;
            }
            else if (device.Stream is null)
            {
                throw device.Fail(Errno.EPROTO, "the device entered STOP_COPY without a saving stream");
            }
        }
    }

    private async Task StopCopyAsync(CancellationToken token)
    {
        _run.Enter(MigrationPhase.StopCopy);
        Report("sources in STOP_COPY");
        await _run.CheckpointAsync(MigrationCheckpoint.StopCopy, token).ConfigureAwait(false);
        foreach (var device in _devices)
        {
            var stream = device.Stream!;
            int n;
            while ((n = await ReadIntoFrameAsync(device, stream, MigrationFrameType.StopCopyData, allowNoData: false, token).ConfigureAwait(false)) > 0)
            {
                device.StopCopyBytes += n;
                Report(null);
            }
            await _writer.WriteUInt64Async(MigrationFrameType.DeviceEnd, (ushort)device.Index, device.BytesMoved, token).ConfigureAwait(false);
        }
        await _writer.WriteFrameAsync(MigrationFrameType.End, MigrationFrame.StreamLevel, default, token).ConfigureAwait(false);
    }

    // Reads once from the device straight into a frame in the pipe; 0 = nothing (ENOMSG/0 in pre-copy, EOF in stop-copy).
    // Where the pipe carries chunks and the device's transport holds what it reads (migrate between vfio-user
    // servers), the frame carries the chunk instead and the bytes never enter this process.
    private async Task<int> ReadIntoFrameAsync(SourceDevice device, IMigrationDataStream stream, MigrationFrameType type, bool allowNoData, CancellationToken token)
    {
        var source = _writer.CarriesChunks ? stream as IDataChunkSource : null;
        Memory<byte> buffer = default;
        DataChunk? chunk = null;
        int n;
        try
        {
            if (source is not null)
                chunk = await source.ReadChunkAsync(_run.Options.BufferBytes, token).ConfigureAwait(false);
            if (chunk is null)
            {
                buffer = _writer.GetPayloadBuffer(_run.Options.BufferBytes);
                n = await stream.ReadAsync(buffer, token).ConfigureAwait(false);
            }
            else
            {
                n = chunk.Length;
            }
        }
        catch (VfioException ex) when (allowNoData && ex.Errno == Errno.ENOMSG)
        {
            return 0;
        }
        catch (VfioException ex)
        {
            throw device.Fail(ex.Errno, $"read migration data: {ex.Detail ?? ex.Message}", ex);
        }
        if (chunk is not null)
        {
            if (n > 0)
                await _writer.CommitChunkAsync(type, (ushort)device.Index, chunk, token).ConfigureAwait(false);
            return n;
        }
        if (n < 0 || n > buffer.Length)
            throw device.Fail(Errno.EIO, $"the device returned {n} from a read of {buffer.Length} bytes");
        if (n > 0)
            await _writer.CommitAsync(type, (ushort)device.Index, n, token).ConfigureAwait(false);
        return n;
    }

    private void Report(string? message, bool force = false)
    {
        if (!_run.ProgressDue(message, force))
            return;
        _run.Publish(new MigrationProgress
        {
            Round = _meter.Round,
            PreCopyBytes = _devices.Sum(d => d.PreCopyBytes),
            StopCopyBytes = _devices.Sum(d => d.StopCopyBytes),
            BandwidthBytesPerSecond = _meter.BandwidthBytesPerSecond,
            PendingBytes = _pending,
            ThresholdBytes = _threshold,
            AcksReceived = _preCopy ? AckCount : 0,
            AcksExpected = _preCopy ? _run.Count : 0,
        }, message);
    }
}
