using System.Runtime.ExceptionServices;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

// The source run's outcomes: success after the destination's Complete, rollback before Commit, and the
// unknown window after it (docs/commit-protocol.md).
internal sealed partial class SourceRun
{
    // Before Commit: tell the destination first (so it does not start), then restart the sources; finding the
    // root cause may wait for the return path. Always throws.
    private async Task<MigrationStatistics> AbortAsync(Exception ex, Task? returnLoop, CancellationToken userToken)
    {
        EngineLog.Failed(_run.Log, MigrationSide.Source, ex);
        _run.Trace.Fault(ex);
        await NotifyAbortAsync(ex).ConfigureAwait(false);
        var recovery = await RollbackAsync().ConfigureAwait(false);
        _run.Recovered("rollback", recovery, "source devices RUNNING again");
        var failure = await ResolveFailureAsync(ex, returnLoop, userToken).ConfigureAwait(false);
        await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Aborted, recovery.Count == 0 ? "sources running again: " + failure.Message : "recovery failed: " + string.Join("; ", recovery)).ConfigureAwait(false);
        if (failure is MigrationException me)
            ExceptionDispatchInfo.Throw(_run.Settle(me, recovery, BuildStatistics()));
        if (recovery.Count > 0)
            throw new MigrationException(MigrationSide.Source, _run.Phase, -1, null, Errno.ECANCELED, "canceled, and recovery failed: " + string.Join("; ", recovery), failure) { RecoveryErrors = recovery };
        ExceptionDispatchInfo.Throw(failure);
        throw failure;
    }

    private async Task CleanupAsync()
    {
        _run.Enter(MigrationPhase.Cleanup);
        await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
        foreach (var device in _devices)
        {
            try
            {
                await device.Device.SetStateAsync(VfioMigrationState.Stop, CancellationToken.None).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                // The destination already runs the workload: do not restart the source. Report only.
                _run.Warnings.Add($"source device {device.Index} ({device.Name}) did not go STOP_COPY>STOP after success: {ex.Message}");
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
        if (secondary && _returnPath.RemoteFailure is null && returnLoop is not null)
        {
            try
            {
                await returnLoop.WaitAsync(_run.Options.FailureNoticeTimeout, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Timeout or the loop's own end: whatever it recorded is used below.
            }
        }
        if (secondary && _returnPath.RemoteFailure is { } remote)
            return remote;
        // Our own transport error carries what the transport knows (it may relay the peer's reason);
        // only a bare cancellation of our linked token is explained by a broken return path.
        if (ex is OperationCanceledException && _returnPath.BrokenFailure is { } broken)
            return broken;
        return ex switch
        {
            MigrationException => ex,
            OperationCanceledException => new MigrationException(MigrationSide.Source, _run.Phase, -1, null, Errno.ECANCELED, "the migration was stopped", ex),
            VfioException v => new MigrationException(MigrationSide.Source, _run.Phase, -1, null, v.Errno, v.Detail ?? v.Message, v),
            _ => new MigrationException(MigrationSide.Source, _run.Phase, -1, null, Errno.EIO, ex.Message, ex),
        };
    }

    // Commit was sent, then something failed (transport, cancellation, a device, the return path). Only the
    // destination's word may restart the sources: wait (bounded, even when canceled) for it.
    private async Task<MigrationStatistics> UnknownWindowAsync(Exception ex)
    {
        try
        {
            await _returnPath.Complete.WaitAsync(_run.Options.FailureNoticeTimeout, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Judged below from what the return path delivered.
        }
        if (_returnPath.CommitRecorded)
        {
            // The destination recorded the commit: the migration succeeded, whatever happened here meanwhile.
            if (!_returnPath.CompleteSeen)
                _run.Warnings.Add($"the destination recorded the commit but did not report its devices running ({ex.Message}); it holds the state: run 'vfio-mig resolve {_run.Id}' on the destination host");
            else
                _run.Warnings.Add($"the migration completed although the source saw a failure after committing: {ex.Message}");
            return await FinishCommittedAsync().ConfigureAwait(false);
        }
        if (_returnPath.RemoteFailure is { } aborted)
        {
            // An Error after Commit: the destination recorded aborted (it refuses any later Commit) and reset
            // its devices, so restarting the sources is safe.
            EngineLog.Failed(_run.Log, MigrationSide.Source, aborted);
            _run.Trace.Fault(aborted);
            var recovery = await RollbackAsync().ConfigureAwait(false);
            _run.Trace.Recovery("rollback", recovery.Count == 0 ? "the destination decided aborted; source devices RUNNING again" : string.Join("; ", recovery));
            await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Aborted, "the destination decided aborted; sources running again: " + aborted.Message).ConfigureAwait(false);
            ExceptionDispatchInfo.Throw(_run.Settle(aborted, recovery, BuildStatistics()));
        }

        // No answer: the destination may have committed and run, or not. Neither restart nor reset: the
        // sources keep their state in STOP_COPY until the decision is asked for.
        await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
        var cause = _returnPath.BrokenFailure is { } broken && ex is OperationCanceledException ? broken : ex;
        var errno = cause is VfioException v ? v.Errno : cause is OperationCanceledException ? Errno.ECANCELED : Errno.EIO;
        string why = $"the outcome is unknown after Commit was sent ({(cause as VfioException)?.Detail ?? cause.Message}); the source devices stay stopped with their state (held); the destination decides: vfio-mig resolve {_run.Id}";
        EngineLog.Held(_run.Log, MigrationSide.Source, _run.Id, why);
        _run.Trace.Fault(cause);
        _run.Trace.Recovery("hold", why);
        await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Held, why).ConfigureAwait(false);
        throw new MigrationException(MigrationSide.Source, _run.Phase, -1, null, errno, why, cause)
        {
            Held = true,
            MigrationId = _run.Id,
            Statistics = BuildStatistics(),
        };
    }

    private async Task<MigrationStatistics> FinishCommittedAsync()
    {
        _downtime = _run.SinceSwitchover;
        if (_returnPath.Complete.IsCompletedSuccessfully)
        {
            ulong startMicros = _returnPath.Complete.Result;
            _destinationStart = TimeSpan.FromTicks((long)Math.Min(startMicros, (ulong)(TimeSpan.MaxValue.Ticks / 10)) * 10);
        }
        await CleanupAsync().ConfigureAwait(false);
        await _run.WriteRecordQuietlyAsync(MigrationRecordStatus.Completed, "committed; the source devices are stopped for good").ConfigureAwait(false);
        _run.Enter(MigrationPhase.Completed);
        Report("migration complete");
        return _run.Completed(BuildStatistics());
    }

    // Restarts every touched source: stopped ones together (all to RUNNING_P2P first when P2P is in use), then
    // RUNNING, else reset. Returns what could not be recovered.
    private async Task<IReadOnlyList<string>> RollbackAsync()
    {
        await EngineDevice.DisposeStreamsAsync(_devices).ConfigureAwait(false);
        var errors = new List<string>();
        var needsRun = new List<SourceDevice>();
        foreach (var device in _devices)
        {
            if (!device.Touched)
                continue;
            var dev = device.Device;
            try
            {
                var state = await dev.GetStateAsync(CancellationToken.None).ConfigureAwait(false);
                if (state == VfioMigrationState.Running)
                    continue;
                needsRun.Add(device);
                if (_p2p && state is VfioMigrationState.StopCopy or VfioMigrationState.Stop)
                    await dev.SetStateAsync(VfioMigrationState.RunningP2P, CancellationToken.None).ConfigureAwait(false);
            }
            catch (VfioException)
            {
                if (!needsRun.Contains(device))
                    needsRun.Add(device);
            }
        }
        foreach (var device in needsRun)
        {
            var dev = device.Device;
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
                    errors.Add($"source device {device.Index} ({dev.Name}): SET RUNNING failed ({setError.Message}) and reset failed ({resetError.Message})");
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
            OperationCanceledException => new MigrationStatus(Errno.ECANCELED, (byte)_run.Phase, "the source canceled the migration"),
            VfioException v => new MigrationStatus(v.Errno, (byte)_run.Phase, v.Message),
            _ => new MigrationStatus(Errno.EIO, (byte)_run.Phase, failure.Message),
        };
        using var timeout = new CancellationTokenSource(_run.Options.FailureNoticeTimeout);
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

    private MigrationStatistics BuildStatistics()
    {
        var statistics = _run.Statistics(_devices);
        return statistics with
        {
            PreCopyUsed = _preCopy,
            P2PUsed = _p2p,
            Rounds = _meter.Round,
            StreamBytes = _writer.BytesWritten,
            PreCopyBandwidthBytesPerSecond = _meter.BandwidthBytesPerSecond,
            StopCopyBandwidthBytesPerSecond = _stopCopyTime > TimeSpan.Zero ? statistics.StopCopyBytes / _stopCopyTime.TotalSeconds : 0,
            PendingBytesAtSwitchover = _pending,
            ForcedSwitchover = _forced,
            StopCopyTime = _stopCopyTime,
            DestinationStartTime = _destinationStart,
            Downtime = _downtime,
        };
    }
}
