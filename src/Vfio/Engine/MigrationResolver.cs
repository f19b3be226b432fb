using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>What <see cref="MigrationResolver"/> did to one device.</summary>
/// <param name="Name">The device's name (the CLI: its address).</param>
/// <param name="Side">Its side in the migration.</param>
/// <param name="State">Its state afterwards, when it could be read.</param>
/// <param name="Action">Plain words: started, stopped for good, resumed, reset, already …, or why nothing was done.</param>
/// <param name="Ok">False when the device could not be brought where the decision says.</param>
public sealed record DeviceResolution(string Name, MigrationSide Side, VfioMigrationState? State, string Action, bool Ok);

/// <summary>The outcome of resolving a migration or recovering a device.</summary>
/// <param name="Id">The migration id (<see cref="Guid.Empty"/> for a forced recovery no record explains).</param>
/// <param name="Decision">The decision applied, if any.</param>
/// <param name="DecidedNow">True when this call made the decision (resolve on the destination side, no decision before).</param>
/// <param name="Devices">Per device.</param>
public sealed record MigrationResolution(Guid Id, MigrationDecision? Decision, bool DecidedNow, IReadOnlyList<DeviceResolution> Devices)
{
    /// <summary>True when every device is where the decision says.</summary>
    public bool Ok => Devices.All(d => d.Ok);
}

/// <summary>
/// Finishes held or interrupted migrations (docs/commit-protocol.md, "Resolving"): applies the recorded decision
/// so that exactly one copy runs. OS-free: devices and the store are given.
/// </summary>
public static class MigrationResolver
{
    /// <summary>
    /// Resolves migration <paramref name="id"/>. With <paramref name="destinations"/> (this host has the destination
    /// side) a missing decision is decided aborted here; without them the decision must be on record or
    /// <paramref name="given"/> (learned from the destination host), which is then recorded write-once.
    /// </summary>
    /// <exception cref="VfioException">ENOENT: no decision here and none given (the source host cannot decide);
    /// EEXIST: <paramref name="given"/> contradicts the decision on record.</exception>
    public static async Task<MigrationResolution> ResolveAsync(Guid id, IMigrationDecisionStore store, IReadOnlyList<IVfioMigrationDevice>? sources, IReadOnlyList<IVfioMigrationDevice>? destinations, MigrationDecision? given = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var decision = await store.ReadDecisionAsync(id, cancellationToken).ConfigureAwait(false);
        bool decidedNow = false;
        if (decision is null && destinations is not null && given is null)
        {
            decision = await store.DecideAsync(new MigrationDecisionRecord(id, MigrationDecision.Aborted, "resolve", "no commit was recorded; resolve decided aborted", DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);
            decidedNow = decision.DecidedBy == "resolve";
        }
        else if (decision is null && given is { } g)
        {
            decision = await store.DecideAsync(new MigrationDecisionRecord(id, g, "copied", "learned from the destination host", DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);
        }
        if (decision is null)
            throw new VfioException(Errno.ENOENT, "resolve", $"no decision for migration {id} is recorded here, and this host is not its destination: the destination decides (run 'vfio-mig resolve {id}' on the destination host, then here 'vfio-mig resolve {id} --decision DECISION')");
        if (given is { } wanted && wanted != decision.Decision)
            throw new VfioException(Errno.EEXIST, "resolve", $"migration {id} is recorded {Name(decision.Decision)} here ({decision.DecidedBy}: {decision.Reason}); --decision {Name(wanted)} contradicts it");

        var results = new List<DeviceResolution>();
        bool committed = decision.Decision == MigrationDecision.Committed;
        if (destinations is not null)
        {
            results.AddRange(committed ? await StartAsync(destinations, cancellationToken).ConfigureAwait(false) : await ResetAsync(destinations, cancellationToken).ConfigureAwait(false));
            await MarkAsync(store, id, MigrationSide.Destination, destinations, committed, results, cancellationToken).ConfigureAwait(false);
        }
        if (sources is not null)
        {
            var sourceResults = committed ? await StopForGoodAsync(sources, cancellationToken).ConfigureAwait(false) : await ResumeAsync(sources, cancellationToken).ConfigureAwait(false);
            results.AddRange(sourceResults);
            await MarkAsync(store, id, MigrationSide.Source, sources, committed, sourceResults, cancellationToken).ConfigureAwait(false);
        }
        return new MigrationResolution(id, decision.Decision, decidedNow, results);
    }

    /// <summary>
    /// Returns one device to service: a source to RUNNING, a destination reset — when the newest record naming
    /// <paramref name="device"/> says its migration is aborted (a destination-side record with no decision is
    /// decided aborted here). A committed migration is refused (resolve it instead). With no record, only
    /// <paramref name="force"/> acts (as a source: RUNNING).
    /// </summary>
    /// <exception cref="VfioException">EBUSY: the migration is committed or undecided (the message says what to run); ENOENT: no record and no force.</exception>
    public static async Task<MigrationResolution> RecoverAsync(IVfioMigrationDevice device, IMigrationDecisionStore store, bool force, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(store);
        var state = await device.GetStateAsync(cancellationToken).ConfigureAwait(false);
        var record = (await store.ListRecordsAsync(cancellationToken).ConfigureAwait(false))
            .Where(r => r.Devices.Contains(device.Name))
            .OrderByDescending(r => r.IsUnresolved)
            .ThenByDescending(r => r.UpdatedUtc)
            .FirstOrDefault();
        if (state == VfioMigrationState.Running)
            return new MigrationResolution(record?.Id ?? Guid.Empty, null, false, [new DeviceResolution(device.Name, record?.Side ?? MigrationSide.Source, state, "already RUNNING; nothing to do", true)]);
        if (record is null)
        {
            if (!force)
                throw new VfioException(Errno.ENOENT, "recover", $"{device.Name} is in {MigrationStateMachine.Name(state)} and no migration record here names it, so it cannot be known whether its state was migrated elsewhere; --force resumes it anyway");
            return new MigrationResolution(Guid.Empty, null, false, await ResumeAsync([device], cancellationToken).ConfigureAwait(false));
        }
        var decision = await store.ReadDecisionAsync(record.Id, cancellationToken).ConfigureAwait(false);
        // This host is the decision point when it has the destination's record (for a same-host migration too).
        if (decision is null && (record.Side == MigrationSide.Destination || await store.ReadRecordAsync(record.Id, MigrationSide.Destination, cancellationToken).ConfigureAwait(false) is not null))
            decision = await store.DecideAsync(new MigrationDecisionRecord(record.Id, MigrationDecision.Aborted, "recover", $"recover {device.Name}: no commit was recorded", DateTimeOffset.UtcNow), cancellationToken).ConfigureAwait(false);
        if (decision?.Decision == MigrationDecision.Committed)
        {
            throw new VfioException(Errno.EBUSY, "recover", record.Side == MigrationSide.Destination
                ? $"{device.Name} holds the committed state of migration {record.Id}; 'vfio-mig resolve {record.Id}' starts it"
                : $"migration {record.Id} was committed: the destination owns the state and this source must not run again; 'vfio-mig resolve {record.Id}' stops it for good");
        }
        if (decision is null && !force)
            throw new VfioException(Errno.EBUSY, "recover", $"{device.Name} is the source of migration {record.Id}, whose decision is not known here; run 'vfio-mig resolve {record.Id}' on the destination host, then here 'vfio-mig resolve {record.Id} --decision DECISION' (or --force, if the destination is known never to run it)");
        var results = record.Side == MigrationSide.Destination
            ? await ResetAsync([device], cancellationToken).ConfigureAwait(false)
            : await ResumeAsync([device], cancellationToken).ConfigureAwait(false);
        if (results.All(r => r.Ok) && await store.ReadRecordAsync(record.Id, record.Side, cancellationToken).ConfigureAwait(false) is { } mine)
            await store.WriteRecordAsync(mine with { Status = MigrationRecordStatus.Aborted, Detail = $"recovered {device.Name}{(decision is null ? " (forced)" : "")}", UpdatedUtc = DateTimeOffset.UtcNow }, cancellationToken).ConfigureAwait(false);
        return new MigrationResolution(record.Id, decision?.Decision, decision?.DecidedBy == "recover", results);
    }

    /// <summary>The decision in words (<c>committed</c>, <c>aborted</c>).</summary>
    public static string Name(MigrationDecision decision) => decision == MigrationDecision.Committed ? "committed" : "aborted";

    private static async Task MarkAsync(IMigrationDecisionStore store, Guid id, MigrationSide side, IReadOnlyList<IVfioMigrationDevice> devices, bool committed, List<DeviceResolution> results, CancellationToken cancellationToken)
    {
        bool ok = results.Where(r => r.Side == side).All(r => r.Ok);
        var status = !ok ? MigrationRecordStatus.Held : committed ? MigrationRecordStatus.Completed : MigrationRecordStatus.Aborted;
        var existing = await store.ReadRecordAsync(id, side, cancellationToken).ConfigureAwait(false);
        var record = (existing ?? new MigrationRecord(id, side, [.. devices.Select(d => d.Name)], status, "", DateTimeOffset.UtcNow))
            with { Status = status, Detail = "resolved " + (committed ? "committed" : "aborted") + (ok ? "" : "; a device could not be brought there"), UpdatedUtc = DateTimeOffset.UtcNow };
        await store.WriteRecordAsync(record, cancellationToken).ConfigureAwait(false);
    }

    // Committed, destination side: STOP (loaded) → RUNNING, every P2P-capable device through RUNNING_P2P first.
    private static async Task<List<DeviceResolution>> StartAsync(IReadOnlyList<IVfioMigrationDevice> devices, CancellationToken ct)
    {
        var results = new DeviceResolution?[devices.Count];
        var states = new VfioMigrationState[devices.Count];
        for (int i = 0; i < devices.Count; i++)
        {
            try
            {
                states[i] = await devices[i].GetStateAsync(ct).ConfigureAwait(false);
                if (states[i] is not (VfioMigrationState.Stop or VfioMigrationState.RunningP2P or VfioMigrationState.Running))
                    results[i] = new(devices[i].Name, MigrationSide.Destination, states[i], $"in {MigrationStateMachine.Name(states[i])}, not holding a loaded state (STOP): not started", false);
                else if (states[i] == VfioMigrationState.Stop && (await devices[i].GetCapabilitiesAsync(ct).ConfigureAwait(false) & VfioMigrationFlags.P2P) != 0)
                    await SetAsync(devices[i], VfioMigrationState.RunningP2P, ct).ConfigureAwait(false);
            }
            catch (VfioException e)
            {
                results[i] = new(devices[i].Name, MigrationSide.Destination, null, "could not be started: " + e.Message, false);
            }
        }
        for (int i = 0; i < devices.Count; i++)
        {
            if (results[i] is not null)
                continue;
            results[i] = states[i] == VfioMigrationState.Running
                ? new(devices[i].Name, MigrationSide.Destination, VfioMigrationState.Running, "already RUNNING", true)
                : await TransitionAsync(devices[i], MigrationSide.Destination, VfioMigrationState.Running, "started (RUNNING)", ct).ConfigureAwait(false);
        }
        return [.. results.Select(r => r!)];
    }

    // Aborted, destination side: anything but RUNNING is reset (abandoning a load needs a reset, spec §2.7).
    private static async Task<List<DeviceResolution>> ResetAsync(IReadOnlyList<IVfioMigrationDevice> devices, CancellationToken ct)
    {
        var results = new List<DeviceResolution>();
        foreach (var d in devices)
        {
            try
            {
                var state = await d.GetStateAsync(ct).ConfigureAwait(false);
                if (state == VfioMigrationState.Running)
                {
                    results.Add(new(d.Name, MigrationSide.Destination, state, "RUNNING already (it never held this migration's state, or was reused); left alone", true));
                    continue;
                }
                await d.ResetAsync(ct).ConfigureAwait(false);
                results.Add(new(d.Name, MigrationSide.Destination, await d.GetStateAsync(ct).ConfigureAwait(false), $"reset (was {MigrationStateMachine.Name(state)}; the partial state is discarded)", true));
            }
            catch (VfioException e)
            {
                results.Add(new(d.Name, MigrationSide.Destination, null, "reset failed: " + e.Message, false));
            }
        }
        return results;
    }

    // Committed, source side: the device never runs again; STOP_COPY (or PRE_COPY_P2P …) → STOP.
    private static async Task<List<DeviceResolution>> StopForGoodAsync(IReadOnlyList<IVfioMigrationDevice> devices, CancellationToken ct)
    {
        var results = new List<DeviceResolution>();
        foreach (var d in devices)
        {
            VfioMigrationState state;
            try
            {
                state = await d.GetStateAsync(ct).ConfigureAwait(false);
            }
            catch (VfioException e)
            {
                results.Add(new(d.Name, MigrationSide.Source, null, "state unreadable: " + e.Message, false));
                continue;
            }
            if (state == VfioMigrationState.Stop)
                results.Add(new(d.Name, MigrationSide.Source, state, "stopped for good already (STOP)", true));
            else if (state is VfioMigrationState.Running or VfioMigrationState.RunningP2P or VfioMigrationState.PreCopy or VfioMigrationState.PreCopyP2P)
                results.Add(new(d.Name, MigrationSide.Source, state, $"WARNING: {MigrationStateMachine.Name(state)} although the migration was committed (recovered by force?); left alone: stop it yourself if the destination runs", false));
            else
                results.Add(await TransitionAsync(d, MigrationSide.Source, VfioMigrationState.Stop, "stopped for good (STOP); the destination owns the state", ct).ConfigureAwait(false));
        }
        return results;
    }

    // Aborted, source side: back to RUNNING (the saving streams were closed with the old client).
    private static async Task<List<DeviceResolution>> ResumeAsync(IReadOnlyList<IVfioMigrationDevice> devices, CancellationToken ct)
    {
        var results = new DeviceResolution?[devices.Count];
        var states = new VfioMigrationState[devices.Count];
        bool p2p = devices.Count > 1;
        for (int i = 0; i < devices.Count; i++)
        {
            try
            {
                states[i] = await devices[i].GetStateAsync(ct).ConfigureAwait(false);
                if (p2p && states[i] is VfioMigrationState.Stop or VfioMigrationState.StopCopy)
                    await SetAsync(devices[i], VfioMigrationState.RunningP2P, ct).ConfigureAwait(false);
            }
            catch (VfioException e)
            {
                results[i] = new(devices[i].Name, MigrationSide.Source, null, "could not be resumed: " + e.Message, false);
            }
        }
        for (int i = 0; i < devices.Count; i++)
        {
            if (results[i] is not null)
                continue;
            results[i] = states[i] == VfioMigrationState.Running
                ? new(devices[i].Name, MigrationSide.Source, VfioMigrationState.Running, "RUNNING already", true)
                : await TransitionAsync(devices[i], MigrationSide.Source, VfioMigrationState.Running, $"resumed (RUNNING, was {MigrationStateMachine.Name(states[i])}; its state is intact)", ct).ConfigureAwait(false);
        }
        return [.. results.Select(r => r!)];
    }

    private static async Task<DeviceResolution> TransitionAsync(IVfioMigrationDevice device, MigrationSide side, VfioMigrationState target, string action, CancellationToken ct)
    {
        try
        {
            await SetAsync(device, target, ct).ConfigureAwait(false);
            return new(device.Name, side, await device.GetStateAsync(ct).ConfigureAwait(false), action, true);
        }
        catch (VfioException e)
        {
            return new(device.Name, side, null, $"SET {MigrationStateMachine.Name(target)} failed: {e.Message}", false);
        }
    }

    private static async Task SetAsync(IVfioMigrationDevice device, VfioMigrationState target, CancellationToken ct)
    {
        var stream = await device.SetStateAsync(target, ct).ConfigureAwait(false);
        if (stream is not null)
            await stream.DisposeAsync().ConfigureAwait(false);
    }
}
