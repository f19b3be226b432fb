using Vfio.Device;
using Vfio.Migration;

namespace Vfio.Conformance;

// The probe (capabilities, state, reset, read size), getting a device back to RUNNING, and the device's death.
internal sealed partial class CheckRun
{
    // Errors that mean the device (its server, its connection) is gone: nothing after them is an answer.
    private static readonly Errno[] s_lostErrnos = [Errno.ECONNRESET, Errno.ENOTCONN, Errno.EPIPE];

    private readonly IRawDeviceAccess? _raw;
    private readonly Dictionary<VfioMigrationState, string> _resetProblems = [];
    private readonly SortedSet<VfioMigrationState> _resetOk = [];
    private ConformanceDeviceLoss? _death;
    private string? _current;
    private bool _loadStarted;
    private string? _noReadSize;
    private byte[]? _ownStream;

    // The rule being evaluated, so a death is reported where it happened.
    private void Current(string ruleId) => _current = ruleId;

    private Outcome Observe(Outcome outcome)
    {
        if (_death is null && s_lostErrnos.Contains(outcome.Errno))
            _death = new ConformanceDeviceLoss(DeathRule(), outcome.Describe());
        return outcome;
    }

    private string DeathRule()
    {
        if (_current is { } c && !_results.Any(r => r.Rule == c))
            return c;
        return ConformanceCatalog.Rules.FirstOrDefault(r => r.Group == _group && !_results.Any(x => x.Rule == r.Id))?.Id ?? "probe.restore";
    }

    private void SetReadSize(int size)
    {
        _readSize = size;
        if (_raw is not null)
            _raw.ReadSize = size;
    }

    // Why a device could not be brought to RUNNING: it died, or its reset does not return RUNNING (probe.reset).
    private string? RecoveryCause() => _death?.Rule ?? (_resetProblems.Count > 0 ? "probe.reset" : null);

    // RUNNING by the ways the spec allows, in order: SET RUNNING, SET STOP then RUNNING, reset. From RESUMING and
    // ERROR the reset comes first (§2.7: a load is abandoned only by reset); when a reset leaves RESUMING and nothing
    // was loaded yet, the device's own saved stream is loaded, which returns it to the state it was saved in.
    private async Task<bool> EnsureRunningAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        var now = await GetAsync(device, ct).ConfigureAwait(false);
        if (now == Running)
            return true;
        if (_death is not null)
            return false;
        bool resetTried = false;
        if (now is Resuming or VfioMigrationState.Error or null)
        {
            resetTried = true;
            if (await ResetAndObserveAsync(device, now, ct).ConfigureAwait(false))
                return true;
            now = await GetAsync(device, ct).ConfigureAwait(false);
        }
        if (now == Resuming && !_loadStarted && ReferenceEquals(device, _device) && _ownStream is { } own)
        {
            if ((await LoadOwnStreamAsync(own, ct).ConfigureAwait(false)).Ok && (await SetAsync(device, Running, ct).ConfigureAwait(false)).Ok
                && await GetAsync(device, ct).ConfigureAwait(false) == Running)
                return true;
            now = await GetAsync(device, ct).ConfigureAwait(false);
        }
        if (now is { } state && state != VfioMigrationState.Error)
        {
            if ((await SetAsync(device, Running, ct).ConfigureAwait(false)).Ok && await GetAsync(device, ct).ConfigureAwait(false) == Running)
                return true;
            if ((await SetAsync(device, Stop, ct).ConfigureAwait(false)).Ok && (await SetAsync(device, Running, ct).ConfigureAwait(false)).Ok
                && await GetAsync(device, ct).ConfigureAwait(false) == Running)
                return true;
            now = await GetAsync(device, ct).ConfigureAwait(false);
        }
        if (!resetTried && _death is null)
            return await ResetAndObserveAsync(device, now, ct).ConfigureAwait(false);
        return false;
    }

    // Writes the device's own saved stream into its current resuming session: through the session's stream, or raw where
    // the stream is the client's object (a client ends its stream object on reset even when the device kept RESUMING).
    private async Task<Outcome> LoadOwnStreamAsync(byte[] own, CancellationToken ct)
    {
        _loadStarted = true;
        if (_raw is { } raw)
        {
            for (int at = 0; at < own.Length; at += _options.ChunkSize)
            {
                var piece = own.AsMemory(at, Math.Min(_options.ChunkSize, own.Length - at));
                var w = await TryAsync(() => raw.WriteMigrationDataRawAsync(piece, ct)).ConfigureAwait(false);
                if (!w.Ok)
                    return w;
            }
            return Outcome.Success;
        }
        return _streams.LastOrDefault(st => st.Kind == DataSessionKind.Resuming) is { } resuming
            ? await WriteAsync(resuming, own, ct).ConfigureAwait(false)
            : new Outcome(Errno.EBADF, "no resuming stream to load into");
    }

    // One VFIO_DEVICE_RESET; for the device under test, what it did is kept for probe.reset (§3.4: RUNNING from every state).
    private async Task<bool> ResetAndObserveAsync(IVfioMigrationDevice device, VfioMigrationState? from, CancellationToken ct)
    {
        var reset = await TryAsync(() => device.ResetAsync(ct)).ConfigureAwait(false);
        var after = await GetAsync(device, ct).ConfigureAwait(false);
        if (_death is not null || !ReferenceEquals(device, _device) || from is not { } state)
            return after == Running;
        if (!reset.Ok)
            _resetProblems.TryAdd(state, $"reset in {Name(state)} failed with {reset.Describe()} (GET shows {Name(after)})");
        else if (after != Running)
            _resetProblems.TryAdd(state, $"after a reset in {Name(state)} GET shows {Name(after)}");
        else
            _resetOk.Add(state);
        return after == Running;
    }

    private async Task<bool> ProbeAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        Current("probe.capabilities");
        VfioMigrationFlags caps;
        try
        {
            caps = await device.GetCapabilitiesAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Observe(Outcome.From(ex));
            Fail("probe.capabilities", $"GET MIGRATION failed: {Describe(ex)} (ENOTTY means no migration support)");
            Skip("probe.state", "the capabilities could not be read");
            return false;
        }
        if (caps is not (VfioMigrationFlags.StopCopy or (VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P)
            or (VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy) or (VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy)))
        {
            Fail("probe.capabilities", $"caps {MigrationStateMachine.FormatCaps(caps)} are not one of the defined sets 0x1, 0x3, 0x5, 0x7 (STOP_COPY is mandatory)");
            Skip("probe.state", "the capabilities are not usable");
            return false;
        }
        _caps[device] = caps;
        Pass("probe.capabilities", $"caps {MigrationStateMachine.FormatCaps(caps)}");

        Current("probe.state");
        var initial = await GetAsync(device, ct).ConfigureAwait(false);
        if (initial is not { } s || !MigrationStateMachine.IsValid(s))
        {
            Fail("probe.state", initial is null ? "GET MIG_DEVICE_STATE failed" : $"GET MIG_DEVICE_STATE answered {(uint)initial}, not a state");
            return false;
        }
        if (!await EnsureRunningAsync(device, ct).ConfigureAwait(false))
        {
            ConcludeReset();
            Fail("probe.state", $"initial state {Name(initial)}; neither SET RUNNING, SET STOP then RUNNING, nor a reset brought it to RUNNING (GET shows {Name(await GetAsync(device, ct).ConfigureAwait(false))})");
            return false;
        }
        Pass("probe.state", $"initial state {Name(initial)}; brought to RUNNING");

        // Reset semantics, first seen here (in RUNNING and STOP); every later reset the run needs adds to it.
        Current("probe.reset");
        await ResetAndObserveAsync(device, Running, ct).ConfigureAwait(false);
        if (await EnsureRunningAsync(device, ct).ConfigureAwait(false) && (await DriveAsync(device, Stop, ct).ConfigureAwait(false)).Error is null)
            await ResetAndObserveAsync(device, Stop, ct).ConfigureAwait(false);
        if (!await EnsureRunningAsync(device, ct).ConfigureAwait(false))
        {
            if (_death is null)
                ConcludeReset();
            return _death is not null;
        }

        await ProbeReadSizeAsync(ct).ConfigureAwait(false);
        return true;
    }

    // The size of a data read the device answers: the checker's chunk size, else 4096, else 64 bytes. A size whose
    // first read is refused fails probe.read-size once; later rules read with the size that worked (§4.2: a read may
    // return fewer bytes than asked, it may not refuse the size). The stream read here is kept (see EnsureRunningAsync).
    private async Task ProbeReadSizeAsync(CancellationToken ct)
    {
        const string rule = "probe.read-size";
        Current(rule);
        var refused = new List<string>();
        foreach (int size in new[] { _options.ChunkSize, 4096, 64 }.Where(n => n <= _options.ChunkSize).Distinct())
        {
            SetReadSize(size);
            var saved = await SaveAsync(_device, ct).ConfigureAwait(false);
            if (_death is not null)
            {
                Fail(rule, "");
                return;
            }
            if (saved.Error is not null && !saved.Refused)
            {
                // Reads of this size work; how the stream ends is sessions.stop-copy-eof's business.
                Pass(rule, $"reads of {size} B answered ({saved.Length} B before: {saved.Error})");
                return;
            }
            if (saved.Error is null)
            {
                _ownStream = saved.Data;
                if (refused.Count == 0)
                    Pass(rule, $"STOP_COPY reads of {size} B answered ({saved.Length} B stream)");
                else
                    Fail(rule, $"{string.Join("; ", refused)}; reads of {size} B work, so later rules read {size} B at a time (a read may return fewer bytes than asked for, it may not refuse the size)");
                return;
            }
            if (saved.BlockedBy is not null)
            {
                Block(rule, saved.BlockedBy, saved.Error);
                return;
            }
            refused.Add($"a {size}-byte read: {saved.Error}");
        }
        SetReadSize(_options.ChunkSize);
        _noReadSize = string.Join("; ", refused);
        Fail(rule, $"no read size was answered: {_noReadSize}");
    }

    private async Task<bool> ProbePeerAsync(IVfioMigrationDevice peer, CancellationToken ct)
    {
        try
        {
            _caps[peer] = await peer.GetCapabilitiesAsync(ct).ConfigureAwait(false);
            return await EnsureRunningAsync(peer, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _caps.Remove(peer);
            return false;
        }
    }

    private async Task RestoreAsync(CancellationToken ct)
    {
        const string rule = "probe.restore";
        Current(rule);
        await DisposeStreamsAsync().ConfigureAwait(false);
        if (_death is not null)
        {
            Block(rule, _death.Rule, "");
            return;
        }
        if (await EnsureRunningAsync(_device, ct).ConfigureAwait(false))
        {
            Pass(rule, "the device was left in RUNNING");
            return;
        }
        string where = $"the device could not be returned to RUNNING (GET shows {Name(await GetAsync(_device, ct).ConfigureAwait(false))})";
        if (RecoveryCause() is { } cause)
            Block(rule, cause, $"{where}; see {cause}");
        else
            Fail(rule, where);
    }

    private void ConcludeReset()
    {
        const string rule = "probe.reset";
        if (_resetProblems.Count > 0)
        {
            string recovered = string.Join(", ", _resetOk.Select(st => Name(st)));
            Fail(rule, $"{string.Join("; ", _resetProblems.Values)}{(recovered.Length > 0 ? $" (RUNNING after a reset in {recovered})" : "")}; VFIO_DEVICE_RESET must return RUNNING from every state. Where a reset was needed, the checker used SET RUNNING or SET STOP then RUNNING; the rules that need a working reset are BLOCKED by this one");
        }
        else if (_resetOk.Count > 0)
        {
            Pass(rule, $"RUNNING after a reset in {string.Join(", ", _resetOk.Select(st => Name(st)))}");
        }
        else
        {
            Skip(rule, "no reset was observed");
        }
    }
}
