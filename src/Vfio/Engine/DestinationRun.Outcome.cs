using System.Diagnostics;
using System.Runtime.ExceptionServices;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

// The destination run's decision point (docs/commit-protocol.md): the Commit recorded, the devices started
// together; before the commit any failure is decided aborted and every touched device reset; after it no
// device is reset any more.
internal sealed partial class DestinationRun
{
    private bool _commitAttempted;

    // The decision committed, written ahead during the setup; published on the source's Commit, discarded otherwise.
    private IPreparedDecision? _commitDecision;

    private async Task<MigrationStatistics> RunAsync(CancellationToken token)
    {
        try
        {
            await _writer.WritePreambleAsync(token).ConfigureAwait(false);
            await SetupAsync(token).ConfigureAwait(false);
            _run.SetupDone();
            await LoadAsync(token).ConfigureAwait(false);
            await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
            await ValidateAsync(token).ConfigureAwait(false);
            await _run.CheckpointAsync(MigrationCheckpoint.Loaded, token).ConfigureAwait(false);
            await AwaitCommitAsync(token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            await DiscardCommitDecisionAsync().ConfigureAwait(false);
            var failure = Normalize(ex, token);
            EngineLog.Failed(_run.Log, MigrationSide.Destination, failure);
            _run.Trace.Fault(failure);
            var decision = await DecideAbortedAsync(failure).ConfigureAwait(false);
            if (decision?.Decision == MigrationDecision.Committed)
                return await StartCommittedAsync().ConfigureAwait(false);
            if (decision is null && _commitAttempted)
            {
                // The store failed while recording the commit: it may be on disk. Neither reset nor start.
                var held = _run.Fail(-1, Errno.EIO, $"the decision could not be recorded or read back ({failure.Message}); the devices keep the loaded state (held): vfio-mig resolve {_run.Id}", failure);
                throw await HoldAsync(held).ConfigureAwait(false);
            }
            var recovery = await ResetTouchedAsync().ConfigureAwait(false);
            _run.Recovered("reset", recovery, "destination devices reset");
            if (failure is MigrationException { Side: MigrationSide.Destination } or OperationCanceledException)
                await NotifyErrorAsync(failure).ConfigureAwait(false);
            await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Aborted, recovery.Count == 0 ? "devices reset: " + failure.Message : "reset failed: " + string.Join("; ", recovery)).ConfigureAwait(false);
            if (failure is MigrationException me)
                _run.Settle(me, recovery, BuildStatistics());
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
            wait.CancelAfter(_run.Options.CommitTimeout);
            try
            {
                frame = await NextFrameAsync(wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!token.IsCancellationRequested)
            {
                throw _run.Fail(-1, Errno.ETIMEDOUT, $"no Commit from the source within {_run.Options.CommitTimeout.TotalSeconds:0.#} s after the devices were loaded");
            }
        }
        if (frame.Type == MigrationFrameType.Abort)
            throw SourceAborted(frame);
        if (frame.Type != MigrationFrameType.Commit)
            throw _run.Fail(-1, Errno.EPROTO, $"expected Commit, got {frame}");

        _commitAttempted = true;
        MigrationDecisionRecord decided;
        try
        {
            // Only the publication (a link and a directory fsync) is left for the downtime: the record was written ahead.
            decided = await _commitDecision!.PublishAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            throw _run.Fail(-1, ex.Errno, $"could not record the commit: {ex.Detail ?? ex.Message}", ex);
        }
        if (decided.Decision != MigrationDecision.Committed)
            throw _run.Fail(-1, Errno.ECANCELED, $"the migration was already decided aborted ({decided.DecidedBy}: {decided.Reason}); the late Commit is refused");
        EngineLog.Decided(_run.Log, MigrationSide.Destination, _run.Id, MigrationDecision.Committed);
        _run.Trace.Recovery("decision", "committed");
    }

    // Writes the decision committed ahead — not yet a decision: until its publication on Commit, a crash leaves none —
    // before Ready lets the source stop its devices, so that its write and fsync stay out of the downtime.
    private async Task PrepareCommitDecisionAsync(CancellationToken token)
    {
        try
        {
            _commitDecision = await _run.Store.PrepareDecisionAsync(new MigrationDecisionRecord(_run.Id, MigrationDecision.Committed, "destination", "the source committed after every device loaded", DateTimeOffset.UtcNow), token).ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            throw _run.Fail(-1, ex.Errno, $"could not prepare the commit decision: {ex.Detail ?? ex.Message}", ex);
        }
    }

    // Removes the prepared decision (a published one stays on record); idempotent.
    private async Task DiscardCommitDecisionAsync()
    {
        if (_commitDecision is not { } prepared)
            return;
        _commitDecision = null;
        try
        {
            await prepared.DisposeAsync().ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            EngineLog.RecoveryProblem(_run.Log, MigrationSide.Destination, $"could not discard the prepared decision: {ex.Message}");
        }
    }

    // Records aborted unless a decision exists; returns the decision on record, or null when the store failed
    // (or no id was known yet: nothing to decide, the destination never loaded this migration).
    private async Task<MigrationDecisionRecord?> DecideAbortedAsync(Exception failure)
    {
        if (_run.Id == Guid.Empty)
            return null;
        try
        {
            var decided = await _run.Store.DecideAsync(new MigrationDecisionRecord(_run.Id, MigrationDecision.Aborted, "destination", failure.Message, DateTimeOffset.UtcNow), CancellationToken.None).ConfigureAwait(false);
            EngineLog.Decided(_run.Log, MigrationSide.Destination, _run.Id, decided.Decision);
            _run.Trace.Recovery("decision", decided.Decision == MigrationDecision.Committed ? "committed (already on record)" : "aborted: " + decided.Reason);
            return decided;
        }
        catch (VfioException ex)
        {
            EngineLog.RecoveryProblem(_run.Log, MigrationSide.Destination, $"could not record the decision aborted: {ex.Message}");
            try
            {
                return await _run.Store.ReadDecisionAsync(_run.Id, CancellationToken.None).ConfigureAwait(false);
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
        _run.Enter(MigrationPhase.Start);
        await _run.CheckpointAsync(MigrationCheckpoint.Committed, CancellationToken.None).ConfigureAwait(false);
        await TellQuietlyAsync(MigrationFrameType.Committed, default).ConfigureAwait(false);
        var startClock = Stopwatch.StartNew();
        try
        {
            await StartAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is VfioException or OperationCanceledException)
        {
            var held = _run.Fail(ex is MigrationException m ? m.DeviceIndex : -1, ex is VfioException v ? v.Errno : Errno.ECANCELED,
                $"the migration is committed but a device did not start ({(ex as VfioException)?.Detail ?? ex.Message}); the devices keep the migrated state (held): vfio-mig resolve {_run.Id}", ex);
            throw await HoldAsync(held).ConfigureAwait(false);
        }
        _startTime = startClock.Elapsed;
        _run.Enter(MigrationPhase.Completed);
        // Complete first: the source's downtime ends when it hears it, and the decision is already on record, so the
        // record's fsyncs (up to 14 ms on a busy disk) need not sit inside the downtime.
        Span<byte> micros = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(micros, (ulong)(_startTime.Ticks / 10));
        if (!await TellQuietlyAsync(MigrationFrameType.Complete, micros.ToArray()).ConfigureAwait(false))
            _run.Warnings.Add($"the destination devices run, but the source could not be told; it holds until 'vfio-mig resolve {_run.Id}' tells it the decision committed");
        await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Completed, "committed; destination devices running").ConfigureAwait(false);
        Report("destination devices running", force: true);
        return _run.Completed(BuildStatistics());
    }

    private async Task StartAsync(CancellationToken token)
    {
        _run.Enter(MigrationPhase.Start);
        // All P2P-capable devices reach RUNNING_P2P before any device fully runs.
        foreach (var device in _devices)
        {
            if (device.HasP2P)
                await device.CallAsync("SET device_state RUNNING_P2P", d => d.SetStateAsync(VfioMigrationState.RunningP2P, token)).ConfigureAwait(false);
        }
        foreach (var device in _devices)
            await device.CallAsync("SET device_state RUNNING", d => d.SetStateAsync(VfioMigrationState.Running, token)).ConfigureAwait(false);
    }

    private async Task<MigrationException> HoldAsync(MigrationException held)
    {
        EngineLog.Held(_run.Log, MigrationSide.Destination, _run.Id, held.Message);
        _run.Trace.Fault(held);
        _run.Trace.Recovery("hold", held.Message);
        await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
        await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Held, held.Message).ConfigureAwait(false);
        held.Held = true;
        held.MigrationId = _run.Id;
        held.Statistics = BuildStatistics();
        return held;
    }

    // After the commit the return path is best effort: a frame that cannot go out changes nothing here.
    private async Task<bool> TellQuietlyAsync(MigrationFrameType type, ReadOnlyMemory<byte> payload)
    {
        using var timeout = new CancellationTokenSource(_run.Options.FailureNoticeTimeout);
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

    private Exception Normalize(Exception ex, CancellationToken token) => ex switch
    {
        MigrationException => ex,
        OperationCanceledException when token.IsCancellationRequested => ex,
        VfioException v => _run.Fail(-1, v.Errno, v.Detail ?? v.Message, v),
        _ => _run.Fail(-1, Errno.EIO, ex.Message, ex),
    };

    private async Task<IReadOnlyList<string>> ResetTouchedAsync()
    {
        await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
        var errors = new List<string>();
        foreach (var device in _devices)
        {
            if (!device.Touched)
                continue;
            try
            {
                // Abandoning a load (or a half-started device) needs a reset (spec §2.7).
                await device.Device.ResetAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                errors.Add($"destination device {device.Index} ({device.Name}): reset failed: {ex.Message}");
            }
        }
        return errors;
    }

    private async Task NotifyErrorAsync(Exception failure)
    {
        var status = failure is MigrationException m
            ? new MigrationStatus(m.Errno, (byte)m.Phase, m.Detail ?? m.Message)
            : new MigrationStatus(Errno.ECANCELED, (byte)_run.Phase, "the destination canceled the migration");
        int device = failure is MigrationException { DeviceIndex: >= 0 } md ? md.DeviceIndex : MigrationFrame.StreamLevel;
        using var timeout = new CancellationTokenSource(_run.Options.FailureNoticeTimeout);
        try
        {
            await _writer.WriteStatusAsync(MigrationFrameType.Error, (ushort)device, status, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is VfioException or OperationCanceledException or InvalidOperationException)
        {
            // The source is gone; it will see the streams end.
        }
    }

    private MigrationStatistics BuildStatistics()
    {
        var downtime = _run.SinceSwitchover;
        var stopCopyTime = downtime > _startTime ? downtime - _startTime : TimeSpan.Zero;
        var plan = _devices[0].Setup.Plan;
        return _run.Statistics(_devices) with
        {
            PreCopyUsed = (plan & MigrationPlanFlags.PreCopy) != 0,
            P2PUsed = (plan & MigrationPlanFlags.P2P) != 0,
            StopCopyTime = stopCopyTime,
            DestinationStartTime = _startTime,
            Downtime = downtime,
        };
    }
}
