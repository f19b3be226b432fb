using System.Globalization;
using System.Security.Cryptography;
using Vfio.Migration;

namespace Vfio.Conformance;

// One run of the checker: results, device helpers (set/get/drive/leave/read), group dispatch.
internal sealed partial class CheckRun
{
    private const VfioMigrationState Running = VfioMigrationState.Running;
    private const VfioMigrationState Stop = VfioMigrationState.Stop;
    private const VfioMigrationState StopCopy = VfioMigrationState.StopCopy;
    private const VfioMigrationState Resuming = VfioMigrationState.Resuming;
    private const VfioMigrationState PreCopy = VfioMigrationState.PreCopy;

    private readonly IVfioMigrationDevice _device;
    private readonly ConformanceOptions _options;
    private readonly List<ConformanceResult> _results = [];
    private readonly Dictionary<IVfioMigrationDevice, VfioMigrationFlags> _caps = [];
    private readonly List<IMigrationDataStream> _streams = [];
    private readonly IMigrationArcTrace? _trace;
    private byte[]? _savedStream;
    private string _group = ConformanceGroups.Probe;
    private int _readSize;

    public CheckRun(IVfioMigrationDevice device, ConformanceOptions options)
    {
        _device = device;
        _options = options;
        _trace = device as IMigrationArcTrace ?? InProcessArcTrace.TryCreate(device);
        _raw = device as IRawDeviceAccess;
        SetReadSize(options.ChunkSize);
    }

    private VfioMigrationFlags Caps => _caps[_device];

    public async Task<ConformanceReport> RunAsync(CancellationToken ct)
    {
        string capsText = "";
        if (await ProbeAsync(_device, ct).ConfigureAwait(false))
        {
            capsText = MigrationStateMachine.FormatCaps(Caps);
            // A peer that cannot be probed makes ResumeTarget() skip the checks that need it, with a reason.
            if (_options.Peer is { } peer)
                await ProbePeerAsync(peer, ct).ConfigureAwait(false);

            foreach (var group in ConformanceGroups.Selectable)
            {
                if (_options.Groups is { Count: > 0 } only && !only.Contains(group))
                    continue;
                if (_death is not null)
                    BlockGroup(group);
                else
                    await RunGroupAsync(group, ct).ConfigureAwait(false);
            }
            await RestoreAsync(ct).ConfigureAwait(false);
            ConcludeReset();
        }
        else
        {
            // Without capabilities nothing can be set up; after a failed state probe the device is unusable.
            var cause = _results.FirstOrDefault(r => r.Verdict == ConformanceVerdict.Fail)?.Rule ?? "probe.capabilities";
            foreach (var rule in ConformanceCatalog.Rules.Where(r => (r.Group == ConformanceGroups.Probe || Selected(r.Group)) && !_results.Any(x => x.Rule == r.Id)))
            {
                if (cause == "probe.capabilities")
                    Skip(rule.Id, "the probe failed (see probe.capabilities)");
                else
                    Block(rule.Id, cause, $"the device could not be brought to RUNNING (see {cause})");
            }
        }
        if (capsText.Length == 0 && _caps.TryGetValue(_device, out var probed))
            capsText = MigrationStateMachine.FormatCaps(probed);
        return new ConformanceReport(_device.Name, capsText, Ordered(), _death);
    }

    private bool Selected(string group) => _options.Groups is not { Count: > 0 } only || only.Contains(group);

    private async Task RunGroupAsync(string group, CancellationToken ct)
    {
        _group = group;
        _current = null;
        try
        {
            if (_noReadSize is not null && group is ConformanceGroups.Sessions or ConformanceGroups.PreCopy or ConformanceGroups.RoundTrip)
                BlockGroup(group, "probe.read-size", $"the device answered no read size ({_noReadSize})");
            switch (group)
            {
                case ConformanceGroups.Fsm: await RunFsmAsync(ct).ConfigureAwait(false); break;
                case ConformanceGroups.Sessions: await RunSessionsAsync(ct).ConfigureAwait(false); break;
                case ConformanceGroups.PreCopy: await RunPreCopyAsync(ct).ConfigureAwait(false); break;
                case ConformanceGroups.RoundTrip: await RunRoundTripAsync(ct).ConfigureAwait(false); break;
                case ConformanceGroups.DirtyLogging: await RunDirtyLoggingAsync(ct).ConfigureAwait(false); break;
                case ConformanceGroups.Robustness: await RunRobustnessAsync(ct).ConfigureAwait(false); break;
                default: break;
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Observe(Outcome.From(ex));
            foreach (var rule in Unreported(group))
                Fail(rule.Id, $"the check aborted: {Describe(ex)}");
        }
        // A raw-message probe reports under its own rule ids, which stand in for the catalog's placeholder.
        if (group != ConformanceGroups.Robustness || !_results.Any(r => r.Group == group))
        {
            foreach (var rule in Unreported(group))
                Skip(rule.Id, "not evaluated");
        }
        await DisposeStreamsAsync().ConfigureAwait(false);
        if (_death is null)
        {
            await EnsureRunningAsync(_device, ct).ConfigureAwait(false);
            if (_options.Peer is { } peer && _caps.ContainsKey(peer))
                await EnsureRunningAsync(peer, ct).ConfigureAwait(false);
        }
    }

    // Every unreported rule of the group is blocked: by the rule during which the device stopped answering, or by the given one.
    private void BlockGroup(string group, string? cause = null, string? why = null)
    {
        foreach (var rule in Unreported(group))
        {
            if (cause is null && _death is { } d)
                Block(rule.Id, d.Rule, $"not run: the device stopped answering during {d.Rule}");
            else
                Block(rule.Id, cause!, why!);
        }
    }

    private List<ConformanceRule> Unreported(string group)
        => ConformanceCatalog.Rules.Where(r => r.Group == group && !_results.Any(x => x.Rule == r.Id)).ToList();

    // Results in group order, then catalog order; rules outside the catalog (from a raw-message probe) keep their order.
    private List<ConformanceResult> Ordered()
    {
        var groupOrder = new List<string> { ConformanceGroups.Probe };
        groupOrder.AddRange(ConformanceGroups.Selectable);
        int Index(ConformanceResult r)
        {
            for (int i = 0; i < ConformanceCatalog.Rules.Count; i++)
            {
                if (ConformanceCatalog.Rules[i].Id == r.Rule)
                    return i;
            }
            return int.MaxValue;
        }
        return [.. _results.Select((r, i) => (r, i))
            .OrderBy(x => groupOrder.IndexOf(x.r.Group) is int g && g >= 0 ? g : int.MaxValue)
            .ThenBy(x => Index(x.r))
            .ThenBy(x => x.i)
            .Select(x => x.r)];
    }

    // ---- results ----

    private void Add(string ruleId, ConformanceVerdict verdict, string detail, string? warning = null, string? blockedBy = null)
    {
        var rule = ConformanceCatalog.Get(ruleId);
        if (_results.Any(r => r.Rule == ruleId))
            return;
        // Once the device stopped answering, its rule fails with that cause and every later rule is blocked by it.
        if (_death is { } death)
        {
            if (ruleId == death.Rule)
            {
                verdict = ConformanceVerdict.Fail;
                detail = $"the device stopped answering: {death.Detail}; every later rule is BLOCKED";
                warning = null;
                blockedBy = null;
            }
            else
            {
                verdict = ConformanceVerdict.Blocked;
                detail = $"not completed: the device stopped answering during {death.Rule}";
                warning = null;
                blockedBy = death.Rule;
            }
        }
        if (warning is not null && verdict == ConformanceVerdict.Pass && _options.Strict)
        {
            verdict = ConformanceVerdict.Fail;
            detail = $"{detail} (strict: {warning})";
            warning = null;
        }
        _results.Add(new ConformanceResult(rule.Group, rule.Id, rule.Spec, verdict, detail) { Warning = warning, BlockedBy = blockedBy });
    }

    private void Pass(string ruleId, string detail, string? warning = null) => Add(ruleId, ConformanceVerdict.Pass, detail, warning);

    private void Fail(string ruleId, string detail) => Add(ruleId, ConformanceVerdict.Fail, detail);

    private void Skip(string ruleId, string reason) => Add(ruleId, ConformanceVerdict.Skip, reason);

    private void Block(string ruleId, string cause, string why) => Add(ruleId, ConformanceVerdict.Blocked, why, blockedBy: cause);

    // A rule whose set-up failed: blocked when an earlier failure explains it, else a failure of its own.
    private void Unmet(string ruleId, Driven setup)
    {
        if (setup.BlockedBy is { } cause)
            Block(ruleId, cause, $"{setup.Error} (see {cause})");
        else
            Fail(ruleId, setup.Error ?? "the set-up failed");
    }

    private void SkipGroup(string group, string reason)
    {
        foreach (var rule in Unreported(group))
            Skip(rule.Id, reason);
    }

    // Collects the problems of a rule checked over many cases.
    private sealed class Tally(string ruleId)
    {
        public string RuleId { get; } = ruleId;

        public int Checked { get; set; }

        public List<string> Problems { get; } = [];

        // Cases whose set-up an earlier failure prevented, and that failure's rule.
        public int Blocked { get; set; }

        public string? BlockedBy { get; set; }

        public string? BlockedWhy { get; set; }
    }

    private void Conclude(Tally tally, string what)
    {
        if (tally.Problems.Count > 0)
        {
            string first = string.Join("; ", tally.Problems.Take(3));
            string more = tally.Problems.Count > 3 ? $" (+{tally.Problems.Count - 3} more)" : "";
            Fail(tally.RuleId, $"{tally.Problems.Count} of {tally.Checked} {what} wrong: {first}{more}");
            return;
        }
        if (tally.BlockedBy is { } cause)
        {
            Block(tally.RuleId, cause, $"{tally.Blocked} of {tally.Checked} {what} could not be set up: {tally.BlockedWhy}");
            return;
        }
        if (tally.Checked == 0)
        {
            Skip(tally.RuleId, $"no {what} apply to caps {MigrationStateMachine.FormatCaps(Caps)}");
            return;
        }
        Pass(tally.RuleId, $"{tally.Checked} {what} checked");
    }

    // ---- device helpers ----

    private readonly record struct Outcome(Errno Errno, string? Message)
    {
        public bool Ok => Errno == Errno.None;

        public string Describe() => Ok ? "success" : Message ?? VfioException.NameOf(Errno);

        public static Outcome Success { get; } = new(Errno.None, null);

        public static Outcome From(Exception ex) => ex is VfioException v ? new(v.Errno, v.Message) : new(Errno.EIO, "unexpected " + CheckRun.Describe(ex));
    }

    private readonly record struct SetOutcome(Outcome Result, IMigrationDataStream? Stream)
    {
        public bool Ok => Result.Ok;

        public Errno Errno => Result.Errno;
    }

    private readonly record struct ReadOutcome(Outcome Result, int Count)
    {
        public bool Ok => Result.Ok;

        public string Describe() => Ok ? $"{Count} bytes" : Result.Describe();
    }

    // The outcome of bringing a device into a state for a rule: an error (null = done), the failed rule that explains
    // it (the rule is then BLOCKED rather than FAILED), and the last stream opened on the way.
    private readonly record struct Driven(string? Error, string? BlockedBy, IMigrationDataStream? Stream)
    {
        public static Driven Done(IMigrationDataStream? stream) => new(null, null, stream);
    }

    private static string Describe(Exception ex) => ex is VfioException v ? v.Message : $"{ex.GetType().Name}: {ex.Message}";

    private static string Name(VfioMigrationState? state) => state is { } s ? MigrationStateMachine.Name(s) : "(GET failed)";

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    private async Task<Outcome> TryAsync(Func<ValueTask> op)
    {
        try
        {
            await op().ConfigureAwait(false);
            return Outcome.Success;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return Observe(Outcome.From(ex));
        }
    }

    private async Task<SetOutcome> SetAsync(IVfioMigrationDevice device, VfioMigrationState target, CancellationToken ct)
    {
        try
        {
            var stream = await device.SetStateAsync(target, ct).ConfigureAwait(false);
            if (stream is not null)
                _streams.Add(stream);
            if (target == Resuming)
                _loadStarted = false;
            return new SetOutcome(Outcome.Success, stream);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return new SetOutcome(Observe(Outcome.From(ex)), null);
        }
    }

    private async Task<VfioMigrationState?> GetAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        try
        {
            return await device.GetStateAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Observe(Outcome.From(ex));
            return null;
        }
    }

    private async Task<ReadOutcome> ReadAsync(IMigrationDataStream stream, Memory<byte> buffer, CancellationToken ct)
    {
        try
        {
            return new ReadOutcome(Outcome.Success, await stream.ReadAsync(buffer, ct).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return new ReadOutcome(Observe(Outcome.From(ex)), 0);
        }
    }

    // Every write into a resuming session goes through here: once data is loaded, only a reset abandons the load (§2.7).
    private Task<Outcome> WriteAsync(IMigrationDataStream stream, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        _loadStarted = true;
        return TryAsync(() => stream.WriteAsync(data, ct));
    }

    private static string DescribeStale(ReadOutcome r)
        => r.Ok ? $"returned {r.Count} bytes instead of ENODEV" : $"failed with {r.Result.Describe()} instead of ENODEV";

    private async Task DisposeStreamsAsync()
    {
        foreach (var s in _streams)
        {
            try
            {
                await s.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Closing a stream never changes the device (spec §4.1); nothing to report.
            }
        }
        _streams.Clear();
    }

    // From RUNNING to the state by single legal arcs, checking GET after each; returns the last stream opened.
    private async Task<Driven> DriveAsync(IVfioMigrationDevice device, VfioMigrationState target, CancellationToken ct)
    {
        if (!await EnsureRunningAsync(device, ct).ConfigureAwait(false))
            return new Driven($"could not bring the device to RUNNING (GET shows {Name(await GetAsync(device, ct).ConfigureAwait(false))})", RecoveryCause(), null);
        IMigrationDataStream? stream = null;
        foreach (var arc in MigrationStateMachine.GetPath(Running, target, _caps[device]).Arcs)
        {
            var o = await SetAsync(device, arc.To, ct).ConfigureAwait(false);
            if (!o.Ok)
                return new Driven($"setting up {Name(target)}: arc {arc} failed with {o.Result.Describe()}", ArcCause(), null);
            stream = o.Stream ?? stream;
            var now = await GetAsync(device, ct).ConfigureAwait(false);
            if (now != arc.To)
                return new Driven($"setting up {Name(target)}: after arc {arc} GET shows {Name(now)}", ArcCause(), null);
        }
        return Driven.Done(stream);
    }

    // A set-up arc that fails is fsm.legal-arcs' finding when that rule already failed; otherwise the rule's own.
    private string? ArcCause()
        => _death?.Rule ?? (_results.Any(r => r.Rule == "fsm.legal-arcs" && r.Verdict == ConformanceVerdict.Fail) ? "fsm.legal-arcs" : null);

    // Back to RUNNING: by legal arcs from saving states and STOP, then the recovery ladder (EnsureRunningAsync).
    private async Task LeaveAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        var now = await GetAsync(device, ct).ConfigureAwait(false);
        if (now is { } state && state != Running && state != Resuming && MigrationStateMachine.IsSupported(state, _caps[device]))
        {
            foreach (var arc in MigrationStateMachine.GetPath(state, Running, _caps[device]).Arcs)
            {
                if (!(await SetAsync(device, arc.To, ct).ConfigureAwait(false)).Ok)
                    break;
            }
        }
        await EnsureRunningAsync(device, ct).ConfigureAwait(false);
        await DisposeStreamsAsync().ConfigureAwait(false);
    }

    private sealed record SavedStream(long Length, byte[]? Data, string Sha256, string? Error, string? BlockedBy = null)
    {
        public static SavedStream Failed(string error, string? blockedBy = null) => new(0, null, "", error, blockedBy);

        // The first read failed: nothing was delivered, so the read itself was refused.
        public bool Refused => Error is not null && Length == 0;
    }

    // Reads a saving stream to its permanent end (0); ENOMSG or other errors end it with an error.
    private async Task<SavedStream> ReadToEndAsync(IMigrationDataStream stream, long limit, CancellationToken ct)
    {
        var buffer = new byte[_readSize];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var kept = new MemoryStream();
        bool keep = true;
        long total = 0;
        string? error = null;
        while (true)
        {
            var r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
            if (!r.Ok)
            {
                error = $"read after {total} bytes failed with {r.Result.Describe()}";
                break;
            }
            if (r.Count == 0)
                break;
            hash.AppendData(buffer, 0, r.Count);
            if (keep && total + r.Count <= _options.MaxStreamBytes)
                kept.Write(buffer, 0, r.Count);
            else
                keep = false;
            total += r.Count;
            if (total > limit)
            {
                error = $"no end of stream after {total} bytes";
                break;
            }
        }
        return new SavedStream(total, keep ? kept.ToArray() : null, Convert.ToHexStringLower(hash.GetHashAndReset()), error);
    }

    private static long ReadLimit(ulong? estimate) => Math.Max(1L << 30, estimate is { } e && e < long.MaxValue / 16 ? (long)e * 8 : 0);

    private async Task<(ulong? Value, Outcome Result)> TryStopCopySizeAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        try
        {
            return (await device.GetStopCopySizeAsync(ct).ConfigureAwait(false), Outcome.Success);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return (null, Observe(Outcome.From(ex)));
        }
    }

    // A complete STOP_COPY stream from the device (taken from STOP, device back to RUNNING afterwards).
    private async Task<SavedStream> SaveAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        var d = await DriveAsync(device, Stop, ct).ConfigureAwait(false);
        if (d.Error is not null)
            return SavedStream.Failed(d.Error, d.BlockedBy);
        var (estimate, _) = await TryStopCopySizeAsync(device, ct).ConfigureAwait(false);
        var o = await SetAsync(device, StopCopy, ct).ConfigureAwait(false);
        if (!o.Ok || o.Stream is null)
            return SavedStream.Failed($"STOP→STOP_COPY {(o.Ok ? "returned no stream" : "failed with " + o.Result.Describe())}", ArcCause());
        var saved = await ReadToEndAsync(o.Stream, ReadLimit(estimate), ct).ConfigureAwait(false);
        await LeaveAsync(device, ct).ConfigureAwait(false);
        return saved;
    }

    // Loads data into the device (STOP→RESUMING, writes, RESUMING→STOP). Returns the outcome of RESUMING→STOP,
    // the state GET shows afterwards, a note about a failed write (writing stops there), and the set-up outcome.
    private async Task<(Outcome Stop, VfioMigrationState? After, string? WriteNote, Driven Setup)> ResumeAsync(
        IVfioMigrationDevice device, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var d = await DriveAsync(device, Stop, ct).ConfigureAwait(false);
        if (d.Error is not null)
            return (Outcome.Success, null, null, d);
        var o = await SetAsync(device, Resuming, ct).ConfigureAwait(false);
        if (!o.Ok || o.Stream is null)
            return (Outcome.Success, null, null, new Driven($"STOP→RESUMING {(o.Ok ? "returned no stream" : "failed with " + o.Result.Describe())}", ArcCause(), null));
        string? note = null;
        // An odd chunk size, so record boundaries and writes do not line up.
        int chunk = Math.Max(1, _options.ChunkSize - 3);
        for (int at = 0; at < data.Length; at += chunk)
        {
            var piece = data.Slice(at, Math.Min(chunk, data.Length - at));
            var w = await WriteAsync(o.Stream, piece, ct).ConfigureAwait(false);
            if (!w.Ok)
            {
                note = $"write at offset {at} failed with {w.Describe()}";
                break;
            }
        }
        var stop = await SetAsync(device, Stop, ct).ConfigureAwait(false);
        var after = await GetAsync(device, ct).ConfigureAwait(false);
        return (stop.Result, after, note, Driven.Done(null));
    }

    // The resume target for checks that load data: the peer, else the device itself when allowed.
    private (IVfioMigrationDevice? Target, string? Reason) ResumeTarget()
    {
        if (_options.Peer is { } peer)
        {
            return _caps.TryGetValue(peer, out var caps) && MigrationStateMachine.IsSupported(Resuming, caps)
                ? (peer, null)
                : (null, "the peer could not be probed or is not migration-capable");
        }
        return _options.AllowDestructive
            ? (_device, null)
            : (null, "loads migration data into the device (overwrites its state); pass --allow-destructive, or --peer DEVICE");
    }
}
