using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Vfio.Diagnostics;
using Vfio.Net;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig bench migrate</c>: whole migrations between processes, as a user runs them. (a) Two <c>serve</c>
/// processes (the source dirtying its state) and <c>migrate</c> between them; (b) <c>receive</c> and <c>send</c> of
/// sample devices over loopback TCP. Each migration is paired with the raw C copy (<see cref="RawCopy"/>) of the
/// same stream bytes (AF_UNIX socketpair for (a), as many loopback TCP connections as channels for (b)), the pairs
/// alternating which runs first. Reported: the median throughput ratio (stream bytes over the engine's total
/// time, against the raw copy's rate), the downtimes, and every process's peak RSS beyond its device state.
/// </summary>
internal static partial class MigrateBenchCommand
{
    /// <summary>The ratio the headline (migrate between two serve processes vs the raw socketpair copy) is held to.</summary>
    private const double Target = 0.3;

    private static readonly TimeSpan ProcessDeadline = TimeSpan.FromMinutes(10);

    public static Command Create()
    {
        var size = CliOptions.Size("--size", "Device state size of every device (1MiB..16GiB, a multiple of 4KiB)", "1GiB", 1 << 20, 16L << 30, multipleOf: 4096);
        var dirtyRate = CliOptions.DirtyRate("16MiB/s");
        var runs = CliOptions.Int("--runs", "Pairs (migration and raw copy of the same bytes, alternating which goes first) per series (1..20); the ratio is their median", 3, 1, 20);
        var channels = CliOptions.Int("--channels", $"Channels of send/receive (1..{NetProtocol.MaxChannels}); the raw reference uses as many connections", 1, 1, NetProtocol.MaxChannels);
        var json = CliOptions.Json();
        var command = new Command("migrate", "Migrations between processes (serve + migrate + serve; send + receive over loopback TCP), each paired with a raw blocking copy of the same bytes.")
        {
            size, dirtyRate, runs, channels, json,
        };
        command.WithHelp(addresses: false,
            "vfio-mig bench migrate --size 1GiB --dirty-rate 16MiB/s",
            "vfio-mig bench migrate --size 256MiB --runs 5 --channels 2 --json");
        command.SetAction(async (parse, cancellationToken) =>
        {
            long bytes = parse.GetValue(size).Bytes;
            long rate = parse.GetValue(dirtyRate).BytesPerSecond;
            int n = parse.GetValue(runs);
            int c = parse.GetValue(channels);
            bool asJson = parse.GetValue(json);
            var text = asJson ? Console.Error : Console.Out;
            var progress = CliProgress.For(asJson);
            string dir = Path.Combine(Path.GetTempPath(), "vfio-mig-bench-" + Guid.NewGuid().ToString("N")[..12]);
            Directory.CreateDirectory(dir);
            try
            {
                var report = new BenchReport("migrate", bytes, n, Target);
                string sz = F($"{bytes}"), dr = F($"{rate}");
                text.WriteLine(F($"bench migrate: {Units.FormatBytes(bytes)} sample devices, source dirtying {Units.FormatBytes(rate)}/s, {n} pair(s) per series, {Environment.ProcessorCount} CPUs, load {BenchReport.LoadAverage()}"));

                // (a) serve → migrate → serve, against one AF_UNIX socketpair with vfio-user's socket buffers.
                var local = report.Add("migrate_serve", "raw_socketpair_1");
                using (var raw = RawCopy.Start(tcp: false, 1, bytes, bytes, Vfio.User.Protocol.VfioUserTuning.SocketBufferBytes))
                {
                    await PairsAsync(report, local, raw, n, "migrate", "raw socketpair", text, progress, "serve + migrate + serve",
                        i => MigrateBetweenServesAsync(dir, i, sz, dr, bytes, cancellationToken)).ConfigureAwait(false);
                }

                // (b) receive ← send over loopback TCP, against as many raw TCP connections as channels.
                var net = report.Add(F($"send_receive_{c}ch"), F($"raw_tcp_{c}"));
                using (var raw = RawCopy.Start(tcp: true, c, bytes, bytes, NetChannel.SocketBufferBytes))
                {
                    string token = Path.Combine(dir, "token");
                    await RunToEndAsync(["token", "new", "--output", token], cancellationToken).ConfigureAwait(false);
                    await PairsAsync(report, net, raw, n, "send/receive", "raw TCP", text, progress, F($"receive + send, {c} channel(s)"),
                        _ => SendReceiveAsync(token, sz, dr, c, bytes, cancellationToken)).ConfigureAwait(false);
                }

                foreach (var series in new[] { local, net })
                    text.WriteLine(F($"{series.Name}: ratio {series.MedianRatio:0.00} (median of {n}), downtime median {Median(series, "downtime_ms"):0.0} ms, max {Max(series, "downtime_ms"):0.0} ms"));
                report.Headline("migrate_serve", local.MedianRatio);
                text.WriteLine(F($"ratio: {local.MedianRatio:0.00} (migrate between two serve processes vs a raw blocking socketpair copy of the same bytes; target >= {Target:0.00}: {(local.MedianRatio >= Target ? "met" : "NOT met")})"));
                if (asJson)
                    await report.WriteAsync(Console.Out).ConfigureAwait(false);
                return ExitCodes.Success;
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        });
        return command;
    }

    private static string F(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    // n pairs of one series: a migration and the raw copy of its stream bytes, odd pairs with the raw copy first.
    private static async Task PairsAsync(BenchReport report, BenchSeries series, RawCopy raw, int n, string ours, string theirs, TextWriter text,
        CliProgress progress, string step, Func<int, Task<MigrationRun>> migrate)
    {
        report.UsedReference(raw);
        text.WriteLine(raw.Description);
        long stream = 0;
        for (int i = 0; i < n; i++)
        {
            (double Seconds, double Cpu)? rawFirst = i % 2 == 1 && stream > 0 ? raw.Run(stream) : null;
            int pair = i;
            var run = await progress.StepAsync(F($"pair {i + 1}: {step}"), () => migrate(pair)).ConfigureAwait(false);
            stream = run.StreamBytes;
            var (rawSeconds, rawCpu) = rawFirst ?? raw.Run(stream);
            // Our CPU is not measured: the processes' CPU time includes their set-up and verification, not the copy alone.
            series.Pair(stream, run.TotalSeconds, null, rawSeconds, rawCpu);
            Record(series, run);
            text.WriteLine(F($"pair {i + 1}: {ours} {Units.FormatBytes(stream / run.TotalSeconds)}/s (downtime {run.DowntimeMs:0.0} ms, {run.Rounds} round(s)), {theirs} {Units.FormatBytes(stream / rawSeconds)}/s, ratio {rawSeconds / run.TotalSeconds:0.00}; RSS beyond state: {run.DescribeRss()}"));
        }
    }

    // Per-pair figures beside the ratio: downtime, rounds, and each process's peak RSS minus its device state (MiB).
    private static void Record(BenchSeries series, MigrationRun run)
    {
        int pair = series.Count;
        series.Context[F($"pair{pair}_downtime_ms")] = run.DowntimeMs;
        series.Context[F($"pair{pair}_rounds")] = run.Rounds;
        foreach (var (process, mib) in run.RssBeyondStateMiB)
            series.Context[F($"pair{pair}_rss_beyond_state_mib_{process}")] = mib;
    }

    private static double Median(BenchSeries series, string suffix)
    {
        var values = series.Context.Where(kv => kv.Key.EndsWith("_" + suffix, StringComparison.Ordinal)).Select(kv => kv.Value).Order().ToList();
        return values.Count == 0 ? 0 : values[values.Count / 2];
    }

    private static double Max(BenchSeries series, string suffix)
        => series.Context.Where(kv => kv.Key.EndsWith("_" + suffix, StringComparison.Ordinal)).Select(kv => kv.Value).DefaultIfEmpty(0).Max();

    /// <summary>One migration: its stream bytes, the engine's total time and downtime, and the processes' RSS.</summary>
    private sealed record MigrationRun(long StreamBytes, double TotalSeconds, double DowntimeMs, int Rounds, List<(string Process, double Mib)> RssBeyondStateMiB)
    {
        public string DescribeRss() => string.Join(", ", RssBeyondStateMiB.Select(r => F($"{r.Process} {r.Mib:0.0} MiB")));
    }

    private static async Task<MigrationRun> MigrateBetweenServesAsync(string dir, int pair, string size, string dirtyRate, long bytes, CancellationToken cancellationToken)
    {
        string a = Path.Combine(dir, F($"src{pair}.sock")), b = Path.Combine(dir, F($"dst{pair}.sock"));
        using var source = Child.Start(["serve", "--socket", a, "--size", size, "--dirty-rate", dirtyRate, "--seed", "1"]);
        using var destination = Child.Start(["serve", "--socket", b, "--size", size, "--seed", "2"]);
        await source.WaitForLineAsync(ServingLine(), cancellationToken).ConfigureAwait(false);
        await destination.WaitForLineAsync(ServingLine(), cancellationToken).ConfigureAwait(false);
        using var migrate = Child.Start(["migrate", "--from", "unix:" + a, "--to", "unix:" + b, "--json"]);
        var document = await migrate.JsonResultAsync(cancellationToken).ConfigureAwait(false);
        var rss = new List<(string, double)>
        {
            ("serve_source", Mib(source.PeakRss - bytes)),
            ("serve_destination", Mib(destination.PeakRss - bytes)),
            ("migrate", Mib(migrate.PeakRss)),
        };
        return FromJson(document, rss);
    }

    private static async Task<MigrationRun> SendReceiveAsync(string token, string size, string dirtyRate, int channels, long bytes, CancellationToken cancellationToken)
    {
        using var receive = Child.Start(["receive", "--listen", "127.0.0.1:0", "--into", F($"sample:size={size},seed=2"), "--token-file", token, "--json"]);
        var listening = await receive.WaitForLineAsync(ListeningLine(), cancellationToken).ConfigureAwait(false);
        using var send = Child.Start(["send", "--from", F($"sample:size={size},dirty-rate={dirtyRate},seed=1"), "--to", "tcp://" + listening.Groups[1].Value,
            "--token-file", token, "--channels", F($"{channels}"), "--json"]);
        var document = await send.JsonResultAsync(cancellationToken).ConfigureAwait(false);
        await receive.JsonResultAsync(cancellationToken).ConfigureAwait(false);
        var rss = new List<(string, double)> { ("send", Mib(send.PeakRss - bytes)), ("receive", Mib(receive.PeakRss - bytes)) };
        return FromJson(document, rss);
    }

    private static MigrationRun FromJson(JsonDocument document, List<(string, double)> rss)
    {
        using (document)
        {
            var m = document.RootElement.GetProperty("migration");
            return new MigrationRun(m.GetProperty("stream_bytes").GetInt64(), m.GetProperty("total_ms").GetDouble() / 1000, m.GetProperty("downtime_ms").GetDouble(),
                m.GetProperty("rounds").GetInt32(), rss);
        }
    }

    private static double Mib(long bytes) => Math.Round(bytes / 1048576.0, 1);

    private static async Task RunToEndAsync(string[] args, CancellationToken cancellationToken)
    {
        using var child = Child.Start(args);
        await child.ExitAsync(cancellationToken).ConfigureAwait(false);
    }

    [GeneratedRegex(@"^serving ")]
    private static partial Regex ServingLine();

    [GeneratedRegex(@"listening on (\S+) ")]
    private static partial Regex ListeningLine();

    /// <summary>
    /// A vfio-mig child process (this binary; under the JIT, dotnet with this assembly): its output lines, and its
    /// peak RSS (VmHWM) sampled until it exits.
    /// </summary>
    private sealed class Child : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];
        private readonly System.Text.StringBuilder _stdout = new();
        private readonly Lock _lock = new();
        private readonly Task _sampling;
        private readonly CancellationTokenSource _stop = new();
        private readonly string _name;

        private Child(string[] args)
        {
            _name = args[0];
            string self = Environment.ProcessPath ?? throw new VfioException(Errno.ENOENT, "bench migrate", "this process's path is unknown");
            var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
                psi.ArgumentList.Add(Environment.GetCommandLineArgs()[0]); // under the JIT: the assembly dotnet runs
            foreach (var a in args)
                psi.ArgumentList.Add(a);
            _process = Process.Start(psi) ?? throw new VfioException(Errno.ENOENT, "bench migrate", $"could not start {self}");
            _process.OutputDataReceived += (_, e) => Collect(e.Data, stdout: true);
            _process.ErrorDataReceived += (_, e) => Collect(e.Data, stdout: false);
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            _sampling = SampleRssAsync(_stop.Token);
        }

        public static Child Start(string[] args) => new(args);

        /// <summary>The highest VmHWM seen (bytes); sampled every 20 ms until the process exits or is disposed.</summary>
        public long PeakRss { get; private set; }

        private void Collect(string? line, bool stdout)
        {
            if (line is null)
                return;
            lock (_lock)
            {
                _lines.Add(line);
                if (stdout)
                    _stdout.AppendLine(line);
            }
        }

        private async Task SampleRssAsync(CancellationToken cancellationToken)
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                long hwm = ProcessMemory.PeakRssBytes(_process.Id);
                if (hwm == 0 && _process.HasExited)
                    return;
                PeakRss = Math.Max(PeakRss, hwm);
                try
                {
                    await Task.Delay(20, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }

        /// <summary>Waits (with a deadline) for an output line matching <paramref name="pattern"/>.</summary>
        public async Task<Match> WaitForLineAsync(Regex pattern, CancellationToken cancellationToken)
        {
            var until = DateTime.UtcNow + ProcessDeadline;
            for (int seen = 0; ; await Task.Delay(10, cancellationToken).ConfigureAwait(false))
            {
                lock (_lock)
                {
                    for (; seen < _lines.Count; seen++)
                    {
                        if (pattern.Match(_lines[seen]) is { Success: true } match)
                            return match;
                    }
                }
                if (_process.HasExited)
                    throw Failed($"exited ({_process.ExitCode}) before printing '{pattern}'");
                if (DateTime.UtcNow > until)
                    throw Failed($"did not print '{pattern}' within {ProcessDeadline.TotalMinutes:0} minutes");
            }
        }

        /// <summary>Waits for a successful exit (with a deadline).</summary>
        public async Task ExitAsync(CancellationToken cancellationToken)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(ProcessDeadline);
            try
            {
                await _process.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw Failed($"did not finish within {ProcessDeadline.TotalMinutes:0} minutes");
            }
            await _sampling.ConfigureAwait(false);
            if (_process.ExitCode != 0)
                throw Failed($"failed with exit code {_process.ExitCode}");
        }

        /// <summary>Waits for a successful exit and parses the one JSON document it printed.</summary>
        public async Task<JsonDocument> JsonResultAsync(CancellationToken cancellationToken)
        {
            await ExitAsync(cancellationToken).ConfigureAwait(false);
            string output;
            lock (_lock)
                output = _stdout.ToString();
            try
            {
                return JsonDocument.Parse(output);
            }
            catch (JsonException e)
            {
                throw Failed("printed no JSON document: " + e.Message);
            }
        }

        private VfioException Failed(string what)
        {
            string last;
            lock (_lock)
                last = string.Join(" | ", _lines.TakeLast(3));
            return new VfioException(Errno.EIO, "bench migrate", $"vfio-mig {_name} {what} (last output: {last})");
        }

        public void Dispose()
        {
            // The serve processes run until told; the others have exited by now (or failed).
            if (!_process.HasExited)
            {
                PeakRss = Math.Max(PeakRss, ProcessMemory.PeakRssBytes(_process.Id));
                _process.Kill();
                _process.WaitForExit(TimeSpan.FromSeconds(10));
            }
            _stop.Cancel();
            _process.Dispose();
            _stop.Dispose();
        }
    }
}
