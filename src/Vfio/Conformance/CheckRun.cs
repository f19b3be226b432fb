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

    public CheckRun(IVfioMigrationDevice device, ConformanceOptions options)
    {
        _device = device;
        _options = options;
        _trace = device as IMigrationArcTrace ?? InProcessArcTrace.TryCreate(device);
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
                await RunGroupAsync(group, ct).ConfigureAwait(false);
            }
            await RestoreAsync(ct).ConfigureAwait(false);
        }
        else
        {
            foreach (var rule in ConformanceCatalog.Rules.Where(r => r.Group != ConformanceGroups.Probe && Selected(r.Group)))
                Skip(rule.Id, "the probe failed (see probe.capabilities and probe.state)");
            Skip("probe.restore", "the device could not be probed");
        }
        if (capsText.Length == 0 && _caps.TryGetValue(_device, out var probed))
            capsText = MigrationStateMachine.FormatCaps(probed);
        return new ConformanceReport(_device.Name, capsText, Ordered());
    }

    private bool Selected(string group) => _options.Groups is not { Count: > 0 } only || only.Contains(group);

    private async Task RunGroupAsync(string group, CancellationToken ct)
    {
        try
        {
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
        await EnsureRunningAsync(_device, ct).ConfigureAwait(false);
        if (_options.Peer is { } peer && _caps.ContainsKey(peer))
            await EnsureRunningAsync(peer, ct).ConfigureAwait(false);
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

    private void Add(string ruleId, ConformanceVerdict verdict, string detail, string? warning = null)
    {
        var rule = ConformanceCatalog.Get(ruleId);
        if (_results.Any(r => r.Rule == ruleId))
            return;
        if (warning is not null && verdict == ConformanceVerdict.Pass && _options.Strict)
        {
            verdict = ConformanceVerdict.Fail;
            detail = $"{detail} (strict: {warning})";
            warning = null;
        }
        _results.Add(new ConformanceResult(rule.Group, rule.Id, rule.Spec, verdict, detail) { Warning = warning });
    }

    private void Pass(string ruleId, string detail, string? warning = null) => Add(ruleId, ConformanceVerdict.Pass, detail, warning);

    private void Fail(string ruleId, string detail) => Add(ruleId, ConformanceVerdict.Fail, detail);

    private void Skip(string ruleId, string reason) => Add(ruleId, ConformanceVerdict.Skip, reason);

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
    }

    private void Conclude(Tally tally, string what)
    {
        if (tally.Checked == 0)
        {
            Skip(tally.RuleId, $"no {what} apply to caps {MigrationStateMachine.FormatCaps(Caps)}");
            return;
        }
        if (tally.Problems.Count == 0)
        {
            Pass(tally.RuleId, $"{tally.Checked} {what} checked");
            return;
        }
        string first = string.Join("; ", tally.Problems.Take(3));
        string more = tally.Problems.Count > 3 ? $" (+{tally.Problems.Count - 3} more)" : "";
        Fail(tally.RuleId, $"{tally.Problems.Count} of {tally.Checked} {what} wrong: {first}{more}");
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

    private static string Describe(Exception ex) => ex is VfioException v ? v.Message : $"{ex.GetType().Name}: {ex.Message}";

    private static string Name(VfioMigrationState? state) => state is { } s ? MigrationStateMachine.Name(s) : "(GET failed)";

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    private static async Task<Outcome> TryAsync(Func<ValueTask> op)
    {
        try
        {
            await op().ConfigureAwait(false);
            return Outcome.Success;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return Outcome.From(ex);
        }
    }

    private async Task<SetOutcome> SetAsync(IVfioMigrationDevice device, VfioMigrationState target, CancellationToken ct)
    {
        try
        {
            var stream = await device.SetStateAsync(target, ct).ConfigureAwait(false);
            if (stream is not null)
                _streams.Add(stream);
            return new SetOutcome(Outcome.Success, stream);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return new SetOutcome(Outcome.From(ex), null);
        }
    }

    private static async Task<VfioMigrationState?> GetAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        try
        {
            return await device.GetStateAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return null;
        }
    }

    private static async Task<ReadOutcome> ReadAsync(IMigrationDataStream stream, Memory<byte> buffer, CancellationToken ct)
    {
        try
        {
            return new ReadOutcome(Outcome.Success, await stream.ReadAsync(buffer, ct).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return new ReadOutcome(Outcome.From(ex), 0);
        }
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

    // RUNNING, by reset if needed. False when even a reset does not get there.
    private static async Task<bool> EnsureRunningAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        if (await GetAsync(device, ct).ConfigureAwait(false) == Running)
            return true;
        await TryAsync(() => device.ResetAsync(ct)).ConfigureAwait(false);
        return await GetAsync(device, ct).ConfigureAwait(false) == Running;
    }

    // From RUNNING to the state by single legal arcs, checking GET after each; returns the last stream opened.
    private async Task<(string? Error, IMigrationDataStream? Stream)> DriveAsync(IVfioMigrationDevice device, VfioMigrationState target, CancellationToken ct)
    {
        if (!await EnsureRunningAsync(device, ct).ConfigureAwait(false))
            return ("could not bring the device to RUNNING (reset did not help)", null);
        IMigrationDataStream? stream = null;
        foreach (var arc in MigrationStateMachine.GetPath(Running, target, _caps[device]).Arcs)
        {
            var o = await SetAsync(device, arc.To, ct).ConfigureAwait(false);
            if (!o.Ok)
                return ($"setting up {Name(target)}: arc {arc} failed with {o.Result.Describe()}", null);
            stream = o.Stream ?? stream;
            var now = await GetAsync(device, ct).ConfigureAwait(false);
            if (now != arc.To)
                return ($"setting up {Name(target)}: after arc {arc} GET shows {Name(now)}", null);
        }
        return (null, stream);
    }

    // Back to RUNNING: by legal arcs from saving states and STOP, by reset from RESUMING, ERROR or on any failure.
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

    private sealed record SavedStream(long Length, byte[]? Data, string Sha256, string? Error);

    // Reads a saving stream to its permanent end (0); ENOMSG or other errors end it with an error.
    private async Task<SavedStream> ReadToEndAsync(IMigrationDataStream stream, long limit, CancellationToken ct)
    {
        var buffer = new byte[_options.ChunkSize];
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

    private static async Task<(ulong? Value, Outcome Result)> TryStopCopySizeAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        try
        {
            return (await device.GetStopCopySizeAsync(ct).ConfigureAwait(false), Outcome.Success);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return (null, Outcome.From(ex));
        }
    }

    // A complete STOP_COPY stream from the device (taken from STOP, device back to RUNNING afterwards).
    private async Task<SavedStream> SaveAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        var (error, _) = await DriveAsync(device, Stop, ct).ConfigureAwait(false);
        if (error is not null)
            return new SavedStream(0, null, "", error);
        var (estimate, _) = await TryStopCopySizeAsync(device, ct).ConfigureAwait(false);
        var o = await SetAsync(device, StopCopy, ct).ConfigureAwait(false);
        if (!o.Ok || o.Stream is null)
            return new SavedStream(0, null, "", $"STOP→STOP_COPY {(o.Ok ? "returned no stream" : "failed with " + o.Result.Describe())}");
        var saved = await ReadToEndAsync(o.Stream, ReadLimit(estimate), ct).ConfigureAwait(false);
        await LeaveAsync(device, ct).ConfigureAwait(false);
        return saved;
    }

    // Loads data into the device (STOP→RESUMING, writes, RESUMING→STOP). Returns the outcome of RESUMING→STOP,
    // the state GET shows afterwards, and a note about a failed write (writing stops there).
    private async Task<(Outcome Stop, VfioMigrationState? After, string? WriteNote, string? SetupError)> ResumeAsync(
        IVfioMigrationDevice device, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var (error, _) = await DriveAsync(device, Stop, ct).ConfigureAwait(false);
        if (error is not null)
            return (Outcome.Success, null, null, error);
        var o = await SetAsync(device, Resuming, ct).ConfigureAwait(false);
        if (!o.Ok || o.Stream is null)
            return (Outcome.Success, null, null, $"STOP→RESUMING {(o.Ok ? "returned no stream" : "failed with " + o.Result.Describe())}");
        string? note = null;
        // An odd chunk size, so record boundaries and writes do not line up.
        int chunk = Math.Max(1, _options.ChunkSize - 3);
        for (int at = 0; at < data.Length; at += chunk)
        {
            var piece = data.Slice(at, Math.Min(chunk, data.Length - at));
            var w = await TryAsync(() => o.Stream.WriteAsync(piece, ct)).ConfigureAwait(false);
            if (!w.Ok)
            {
                note = $"write at offset {at} failed with {w.Describe()}";
                break;
            }
        }
        var stop = await SetAsync(device, Stop, ct).ConfigureAwait(false);
        var after = await GetAsync(device, ct).ConfigureAwait(false);
        return (stop.Result, after, note, null);
    }

    private async Task<bool> ProbeAsync(IVfioMigrationDevice device, CancellationToken ct)
    {
        VfioMigrationFlags caps;
        try
        {
            caps = await device.GetCapabilitiesAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
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

        var initial = await GetAsync(device, ct).ConfigureAwait(false);
        if (initial is not { } s || !MigrationStateMachine.IsValid(s))
        {
            Fail("probe.state", initial is null ? "GET MIG_DEVICE_STATE failed" : $"GET MIG_DEVICE_STATE answered {(uint)initial}, not a state");
            return false;
        }
        await TryAsync(() => device.ResetAsync(ct)).ConfigureAwait(false);
        var afterReset = await GetAsync(device, ct).ConfigureAwait(false);
        if (afterReset != Running)
        {
            Fail("probe.state", $"initial state {Name(initial)}; after a reset GET shows {Name(afterReset)}, not RUNNING");
            return false;
        }
        Pass("probe.state", $"initial state {Name(initial)}; RUNNING after reset");
        return true;
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

    private async Task RestoreAsync(CancellationToken ct)
    {
        await DisposeStreamsAsync().ConfigureAwait(false);
        if (await EnsureRunningAsync(_device, ct).ConfigureAwait(false))
            Pass("probe.restore", "the device was left in RUNNING");
        else
            Fail("probe.restore", $"the device could not be returned to RUNNING (GET shows {Name(await GetAsync(_device, ct).ConfigureAwait(false))})");
    }
}
