using System.Diagnostics;
using System.Globalization;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;
using Vfio.Uapi;

namespace Vfio.IntegrationTests.Net;

/// <summary>One sweep configuration: channels and the link's security.</summary>
internal sealed record SweepConfig(int Channels, bool Tls)
{
    public override string ToString() => $"{Channels} channel(s), {(Tls ? "mutual TLS" : "token")}";
}

/// <summary>One fault: kind, connection, direction, byte offset.</summary>
internal sealed record SweepFault(ProxyFault Kind, int Connection, ProxyDirection Direction, long Offset)
{
    public override string ToString() => $"{Kind} conn {Connection} {Direction} @{Offset}";
}

/// <summary>What one trial ended with, after any held end was resolved.</summary>
internal sealed record SweepOutcome(SweepFault Fault, bool Triggered, bool SplitBrain, bool Lost, bool Held, bool Resolved, string Detail);

/// <summary>
/// Runs small migrations (in-process sample devices, real <see cref="NetSenderSession"/>/<see cref="NetReceiverSession"/>
/// on loopback) through a <see cref="FaultProxy"/> and checks, after each, the one invariant that matters: never
/// both copies running, never the state lost, and every held end resolved with one call to exactly one running copy
/// whose digest is the source's.
/// </summary>
internal sealed class FaultSweep : IDisposable
{
    public static readonly TimeSpan TrialLimit = TimeSpan.FromSeconds(60);
    private static readonly ProxyFault[] s_kinds = [ProxyFault.Fin, ProxyFault.Cut, ProxyFault.Stall, ProxyFault.FlipBit];
    private static readonly NetToken s_token = NetToken.New();
    private readonly SweepConfig _config;
    private readonly TestCertificates? _certs;

    public FaultSweep(SweepConfig config)
    {
        _config = config;
        _certs = config.Tls ? new TestCertificates() : null;
    }

    /// <summary>Stall trials run with this idle timeout (the stall must outlast it); others with a long one.</summary>
    public static TimeSpan StallIdle => TimeSpan.FromSeconds(0.6);

    private (NetSecurityOptions Sender, NetSecurityOptions Receiver) Security(bool stall)
    {
        var idle = stall ? StallIdle : TimeSpan.FromSeconds(20);
        var handshake = TimeSpan.FromSeconds(3);
        if (_certs is { } c)
        {
            // Mutual TLS: a receiver accepts no anonymous sender (docs/security.md).
            return (new NetSecurityOptions { UseTls = true, TrustedCertificates = [c.Ca], Certificate = c.Client, IdleTimeout = idle, HandshakeTimeout = handshake },
                    new NetSecurityOptions { UseTls = true, Certificate = c.Server, TrustedCertificates = [c.Ca], IdleTimeout = idle, HandshakeTimeout = handshake });
        }
        var token = new NetSecurityOptions { Token = s_token, IdleTimeout = idle, HandshakeTimeout = handshake };
        return (token, token);
    }

    // Each host has its own records (the destination's decision, each side's record), as two hosts would.
    private static MigrationOptions Engine(Guid id, IMigrationDecisionStore store) => MigrationOptions.Default with
    {
        UsePreCopy = false,
        FailureNoticeTimeout = TimeSpan.FromSeconds(1),
        CommitTimeout = TimeSpan.FromSeconds(3),
        MigrationId = id,
        DecisionStore = store,
    };

    /// <summary>
    /// The fault points. The final exchange — the last <paramref name="tail"/> bytes of the control connection's
    /// forward stream, the last <paramref name="dataTail"/> of each data connection's, and the whole return stream of
    /// the control connection after its handshake — at every <paramref name="step"/>-th byte (1 = every byte; the
    /// starting byte differs per fault kind, so together the kinds cover more bytes); the rest, handshakes
    /// included, at <paramref name="stride"/> evenly spread points per connection and direction.
    /// </summary>
    public static List<SweepFault> Plan(SweepReference reference, int tail, int dataTail, int stride, int step = 1)
    {
        var faults = new List<SweepFault>();
        for (int k = 0; k < s_kinds.Length; k++)
        {
            var kind = s_kinds[k];
            for (int c = 0; c < reference.Forward.Length; c++)
            {
                long total = reference.Forward[c];
                long from = Math.Max(reference.ForwardHandshake[c], total - (c == 0 ? tail : dataTail));
                Add(faults, kind, c, ProxyDirection.Forward, from, total, step, k);
                Spread(faults, kind, c, ProxyDirection.Forward, from, stride);
                long back = reference.Return[c];
                if (c == 0)
                {
                    Add(faults, kind, c, ProxyDirection.Return, reference.ReturnHandshake[c], back, step, k);
                    Spread(faults, kind, c, ProxyDirection.Return, reference.ReturnHandshake[c], stride);
                }
                else
                {
                    Spread(faults, kind, c, ProxyDirection.Return, back, stride);
                }
            }
        }
        return [.. faults.Distinct()];
    }

    private static void Add(List<SweepFault> faults, ProxyFault kind, int c, ProxyDirection direction, long from, long to, int step, int phase)
    {
        for (long o = from + (phase % step); o < to; o += step)
            faults.Add(new SweepFault(kind, c, direction, o));
    }

    private static void Spread(List<SweepFault> faults, ProxyFault kind, int c, ProxyDirection direction, long below, int count)
    {
        for (int i = 0; i < count && below > 0; i++)
            faults.Add(new SweepFault(kind, c, direction, below * i / count));
    }

    /// <summary>The bytes of the connections' set-up alone (TLS and handshake; the TLS 1.3 session tickets too).</summary>
    private async Task<(long[] Forward, long[] Return)> HandshakeBytesAsync()
    {
        var (senderSecurity, receiverSecurity) = Security(stall: false);
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        await using var proxy = new FaultProxy(listener.LocalEndPoint, ProxyFault.None, 0, long.MaxValue);
        var accept = listener.AcceptSessionAsync(receiverSecurity);
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", proxy.Port, _config.Channels, senderSecurity).WaitAsync(TrialLimit);
        await using var receiver = await accept.WaitAsync(TrialLimit);
        await Task.Delay(200);
        int n = proxy.Connections;
        return ([.. Enumerable.Range(0, n).Select(c => proxy.BytesSeen(c, ProxyDirection.Forward))], [.. Enumerable.Range(0, n).Select(c => proxy.BytesSeen(c, ProxyDirection.Return))]);
    }

    /// <summary>A clean run through the proxy: how many bytes each connection carries each way.</summary>
    public async Task<SweepReference> ReferenceAsync()
    {
        var outcome = await RunAsync(new SweepFault(ProxyFault.None, 0, ProxyDirection.Forward, long.MaxValue), record: true);
        if (outcome.Reference is null)
            throw new InvalidOperationException("the clean reference migration failed: " + outcome.Outcome.Detail);
        var (forward, back) = await HandshakeBytesAsync();
        return outcome.Reference with { ForwardHandshake = forward, ReturnHandshake = back };
    }

    /// <summary>Runs <paramref name="faults"/>, <paramref name="parallel"/> at a time (stall trials wait out the idle timeout: more of them at once).</summary>
    public async Task<List<SweepOutcome>> RunAllAsync(IReadOnlyList<SweepFault> faults, int parallel, int parallelStalls)
    {
        var results = new SweepOutcome[faults.Count];
        using var gate = new SemaphoreSlim(parallel);
        using var stallGate = new SemaphoreSlim(parallelStalls);
        var tasks = new List<Task>();
        for (int i = 0; i < faults.Count; i++)
        {
            int index = i;
            var g = faults[i].Kind == ProxyFault.Stall ? stallGate : gate;
            await g.WaitAsync();
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    var clock = Stopwatch.StartNew();
                    results[index] = (await RunAsync(faults[index], record: false)).Outcome;
                    Trace($"{index}/{faults.Count} {faults[index]} {clock.ElapsedMilliseconds} ms: {results[index].Detail}");
                }
                catch (Exception e)
                {
                    results[index] = new SweepOutcome(faults[index], true, false, true, false, false, "trial harness failed: " + e);
                }
                finally
                {
                    g.Release();
                }
            }));
        }
        await Task.WhenAll(tasks);
        return [.. results];
    }

    private async Task<(SweepOutcome Outcome, SweepReference? Reference)> RunAsync(SweepFault fault, bool record)
    {
        var (senderSecurity, receiverSecurity) = Security(fault.Kind == ProxyFault.Stall);
        var deviceOptions = new SampleDeviceOptions { SizeBytes = 256 << 10, Capabilities = VfioMigrationFlags.StopCopy };
        using var sourceDevice = new SampleDevice(deviceOptions with { Seed = 11 });
        using var destinationDevice = new SampleDevice(deviceOptions with { Seed = 12 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destinationRaw = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        byte[] before = sourceDevice.ComputeSha256();
        var destination = new TrackedDevice(destinationRaw, () => Runs(source.GetStateAsync().AsTask().GetAwaiter().GetResult()));
        var id = Guid.NewGuid();
        var sourceStore = new InMemoryMigrationStore();
        var destinationStore = new InMemoryMigrationStore();
        bool senderHeld = false, receiverHeld = false;

        await using var listener = NetListener.Bind("127.0.0.1", 0);
        await using var proxy = new FaultProxy(listener.LocalEndPoint, fault.Kind, fault.Connection, fault.Offset, direction: fault.Direction);
        using var acceptCts = new CancellationTokenSource();
        bool opened = false;
        string receiveError = "", sendError = "";
        var receiveSide = Task.Run(async () =>
        {
            try
            {
                await using var session = await listener.AcceptSessionAsync(receiverSecurity, null, null, acceptCts.Token);
                Volatile.Write(ref opened, true);
                await NetMigration.ReceiveAsync(session, [destination], Engine(Guid.Empty, destinationStore), _ => ValueTask.FromResult(new NetDigest(destinationDevice.ComputeSha256(), "bar0", "")));
            }
            catch (Exception e) when (e is VfioException or MigrationException or OperationCanceledException or IOException)
            {
                receiveError = e.Message;
                receiverHeld = e is MigrationException { Held: true };
            }
        });
        var sendSide = Task.Run(async () =>
        {
            try
            {
                await using var session = await NetSenderSession.ConnectAsync("127.0.0.1", proxy.Port, _config.Channels, senderSecurity);
                await NetMigration.SendAsync(session, [source], Engine(id, sourceStore), _ => ValueTask.FromResult(new NetDigest(sourceDevice.ComputeSha256(), "bar0", "")));
            }
            catch (Exception e) when (e is VfioException or MigrationException or OperationCanceledException or IOException)
            {
                sendError = e.Message;
                senderHeld = e is MigrationException { Held: true };
            }
        });
        await sendSide.WaitAsync(TrialLimit);
        // A sender that failed in its handshake leaves the receiver waiting for another one: end that wait. A
        // session the receiver completes opens when it writes the last verdict, before the sender can have failed
        // on it, so a short grace is enough.
        var settle = Stopwatch.StartNew();
        while (!Volatile.Read(ref opened) && !receiveSide.IsCompleted && settle.Elapsed < TimeSpan.FromMilliseconds(500))
            await Task.Delay(20);
        if (!Volatile.Read(ref opened))
            await acceptCts.CancelAsync();
        await receiveSide.WaitAsync(TrialLimit);

        SweepReference? reference = null;
        if (record && sendError.Length == 0 && receiveError.Length == 0)
        {
            int n = proxy.Connections;
            reference = new SweepReference(
                [.. Enumerable.Range(0, n).Select(c => proxy.BytesSeen(c, ProxyDirection.Forward))],
                [.. Enumerable.Range(0, n).Select(c => proxy.BytesSeen(c, ProxyDirection.Return))]);
        }
        string detail = $"send: {Short(sendError)} | receive: {Short(receiveError)}";
        var outcome = await JudgeAsync(fault, proxy.Triggered, source, sourceDevice, destination, destinationDevice, before, detail);
        if (!outcome.SplitBrain && (senderHeld || receiverHeld || outcome.Held))
        {
            // Held: one resolve per host, as an operator would run them — the destination's host decides (or reads the
            // decision), the source's host applies it.
            string resolveError = "";
            try
            {
                var decided = await MigrationResolver.ResolveAsync(id, destinationStore, null, [destination]);
                await MigrationResolver.ResolveAsync(id, sourceStore, [source], null, decided.Decision);
            }
            catch (Exception e) when (e is VfioException or MigrationException)
            {
                resolveError = "; resolve failed: " + e.Message;
            }
            var after = await JudgeAsync(fault, proxy.Triggered, source, sourceDevice, destination, destinationDevice, before, detail + resolveError);
            bool ok = !after.SplitBrain && !after.Lost && !after.Held && resolveError.Length == 0;
            outcome = after with { Held = true, Resolved = ok, Lost = after.Lost || !ok, Detail = $"held ({(senderHeld ? "sender" : "")}{(receiverHeld ? " receiver" : "")}), resolved: {after.Detail}" };
        }
        if (destination.SplitBrainSeen is { } seen)
            outcome = outcome with { SplitBrain = true, Detail = seen + "; " + outcome.Detail };
        return (outcome, reference);
    }

    private static string Short(string s) => s.Length == 0 ? "ok" : s.Length > 160 ? s[..160] + "…" : s;

    private static bool Runs(VfioMigrationState s) => s is VfioMigrationState.Running or VfioMigrationState.RunningP2P or VfioMigrationState.PreCopy or VfioMigrationState.PreCopyP2P;

    // After the trial: one copy runs, with the source's state; or none runs and resolving makes exactly one run.
    private static async Task<SweepOutcome> JudgeAsync(SweepFault fault, bool triggered, InProcessMigrationDevice source, SampleDevice sourceDevice, TrackedDevice destination, SampleDevice destinationDevice, byte[] before, string detail)
    {
        var s = await source.GetStateAsync();
        var d = await destination.GetStateAsync();
        string states = $"source {MigrationStateMachine.Name(s)}, destination {MigrationStateMachine.Name(d)}";
        // A running source must still hold exactly its state. A running destination is a copy when it was started
        // with the loaded state; one that was reset (or never reached) runs no copy of it.
        bool sourceCopy = Runs(s), destinationCopy = Runs(d) && destination.StartedLoaded;
        if (sourceCopy && destinationCopy)
            return new SweepOutcome(fault, triggered, SplitBrain: true, Lost: false, Held: false, Resolved: false, $"{states}: BOTH RUN the state; {detail}");
        if (sourceCopy)
        {
            bool same = sourceDevice.ComputeSha256().AsSpan().SequenceEqual(before);
            return new SweepOutcome(fault, triggered, false, !same, false, false, same ? states : $"{states}: the source's state changed; {detail}");
        }
        if (destinationCopy)
        {
            bool same = destinationDevice.ComputeSha256().AsSpan().SequenceEqual(before);
            return new SweepOutcome(fault, triggered, false, !same, false, false, same ? states : $"{states}: the destination runs a state that differs from the source's; {detail}");
        }
        // Neither runs the state: held (the caller resolves it and judges again).
        return new SweepOutcome(fault, triggered, false, Lost: true, Held: true, Resolved: false, $"{states}: no copy runs; {detail}");
    }

    public void Dispose() => _certs?.Dispose();

    private static readonly Lock s_traceLock = new();

    // VFIO_MIG_SWEEP_TRACE=FILE: one line per trial as it ends (to watch a long sweep).
    private void Trace(string line)
    {
        if (Environment.GetEnvironmentVariable("VFIO_MIG_SWEEP_TRACE") is { Length: > 0 } path)
        {
            lock (s_traceLock)
                File.AppendAllText(path, $"{_config}: {line}\n");
        }
    }

    /// <summary>Counts for docs/reliability.md and the test log.</summary>
    public static string Summarize(SweepConfig config, IReadOnlyList<SweepOutcome> outcomes, TimeSpan elapsed)
    {
        int trials = outcomes.Count, triggered = outcomes.Count(o => o.Triggered), held = outcomes.Count(o => o.Held), resolved = outcomes.Count(o => o.Resolved);
        int split = outcomes.Count(o => o.SplitBrain), lost = outcomes.Count(o => o.Lost);
        string kinds = string.Join(", ", outcomes.GroupBy(o => o.Fault.Kind).Select(g => $"{g.Key} {g.Count()}"));
        return string.Create(CultureInfo.InvariantCulture, $"{config}: {trials} trials ({kinds}), {triggered} triggered, {held} held, {resolved} resolved, split-brain {split}, lost {lost}, {elapsed.TotalSeconds:0.0} s");
    }
}

/// <summary>Bytes per connection of a clean run: forward (sender → receiver) and return.</summary>
internal sealed record SweepReference(long[] Forward, long[] Return)
{
    /// <summary>Bytes of each connection's set-up (TLS and handshake), forward.</summary>
    public long[] ForwardHandshake { get; init; } = [];

    /// <summary>Bytes of each connection's set-up, return.</summary>
    public long[] ReturnHandshake { get; init; } = [];
}

/// <summary>
/// A destination device that remembers whether what runs is the migrated state: started from STOP after a load
/// (by the engine or a resolve), not reset since. A reset sample device keeps its bytes, so the digest alone cannot
/// tell a started copy from a discarded load.
/// </summary>
internal sealed class TrackedDevice(IVfioMigrationDevice inner, Func<bool> sourceRuns) : IVfioMigrationDevice
{
    private bool _loaded;

    /// <summary>Set when the destination started its loaded state while the source ran: both ran at that instant.</summary>
    public string? SplitBrainSeen { get; private set; }

    /// <summary>True when the device was started with a loaded (migrated) state and not reset since.</summary>
    public bool StartedLoaded { get; private set; }

    public string Name => inner.Name;

    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default) => inner.GetCapabilitiesAsync(cancellationToken);

    public ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default) => inner.GetStateAsync(cancellationToken);

    public async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        var from = await inner.GetStateAsync(cancellationToken);
        var stream = await inner.SetStateAsync(target, cancellationToken);
        if (target == VfioMigrationState.Resuming)
            (_loaded, StartedLoaded) = (false, false);
        else if (from == VfioMigrationState.Resuming && target == VfioMigrationState.Stop)
            _loaded = true;
        else if (_loaded && target is VfioMigrationState.Running or VfioMigrationState.RunningP2P)
        {
            StartedLoaded = true;
            if (sourceRuns())
                SplitBrainSeen ??= "the destination started while the source ran";
        }
        return stream;
    }

    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default) => inner.GetStopCopySizeAsync(cancellationToken);

    public async ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        await inner.ResetAsync(cancellationToken);
        (_loaded, StartedLoaded) = (false, false);
    }

    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default) => inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => inner.StopDmaLoggingAsync(cancellationToken);

    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default) => inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
