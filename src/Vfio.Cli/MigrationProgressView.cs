using System.Globalization;
using Spectre.Console;
using Vfio.Engine;

namespace Vfio.Cli;

/// <summary>
/// Shows a running migration: a Spectre live table when the output is a terminal, plain progress lines
/// (on phase changes and about once a second) otherwise; then a summary table. Shared by the commands
/// that migrate (<c>demo</c>, <c>migrate</c>).
/// </summary>
internal sealed class MigrationProgressView : IProgress<MigrationProgress>
{
    private readonly TextWriter _plain;
    private readonly bool _live;
    private readonly TimeSpan _downtimeLimit;
    private MigrationProgress? _latest;
    private MigrationPhase _lastPrintedPhase;
    private TimeSpan _lastPrinted = TimeSpan.MinValue;

    /// <param name="live">True for the Spectre live display (a terminal), false for plain lines.</param>
    /// <param name="plain">Where plain lines go.</param>
    /// <param name="downtimeLimit">Shown next to the pending bytes.</param>
    public MigrationProgressView(bool live, TextWriter plain, TimeSpan downtimeLimit)
    {
        _live = live;
        _plain = plain;
        _downtimeLimit = downtimeLimit;
    }

    /// <summary>True when standard output is an interactive terminal.</summary>
    public static bool IsTerminal => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    public void Report(MigrationProgress value)
    {
        Volatile.Write(ref _latest, value);
        if (_live)
            return;
        lock (_plain)
        {
            bool phaseChanged = value.Phase != _lastPrintedPhase;
            if (!phaseChanged && value.Message is null && value.Elapsed - _lastPrinted < TimeSpan.FromSeconds(1))
                return;
            _lastPrintedPhase = value.Phase;
            _lastPrinted = value.Elapsed;
            _plain.WriteLine(FormatLine(value));
        }
    }

    /// <summary>Runs <paramref name="migrate"/> with this view reporting, live or plain.</summary>
    public async Task<T> RunAsync<T>(Func<IProgress<MigrationProgress>, Task<T>> migrate)
    {
        if (!_live)
            return await migrate(this).ConfigureAwait(false);
        T result = default!;
        await AnsiConsole.Live(BuildTable(null)).AutoClear(false).StartAsync(async ctx =>
        {
            var task = migrate(this);
            while (!task.IsCompleted)
            {
                ctx.UpdateTarget(BuildTable(Volatile.Read(ref _latest)));
                ctx.Refresh();
                await Task.WhenAny(task, Task.Delay(100)).ConfigureAwait(false);
            }
            ctx.UpdateTarget(BuildTable(Volatile.Read(ref _latest)));
            ctx.Refresh();
            result = await task.ConfigureAwait(false);
        }).ConfigureAwait(false);
        return result;
    }

    /// <summary>One plain progress line.</summary>
    public string FormatLine(MigrationProgress p)
    {
        var c = CultureInfo.InvariantCulture;
        string line = string.Create(c, $"[{p.Elapsed.TotalSeconds,6:0.00}s] {MigrationException.PhaseName(p.Phase),-10} round {p.Round,3}  moved {Units.FormatBytes(p.TotalBytes),10}  bw {Units.FormatBytes(p.BandwidthBytesPerSecond)}/s");
        if (p.Phase == MigrationPhase.PreCopy)
            line += string.Create(c, $"  pending {Units.FormatBytes(p.PendingBytes)} (limit {Units.FormatBytes(p.ThresholdBytes)} in {_downtimeLimit.TotalMilliseconds:0.###} ms)  acks {p.AcksReceived}/{p.AcksExpected}");
        if (p.Message is not null)
            line += "  " + p.Message;
        return line;
    }

    private static Table BuildTable(MigrationProgress? p)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]live migration[/]");
        table.AddColumn("phase").AddColumn("round").AddColumn("pre-copy").AddColumn("stop-copy").AddColumn("bandwidth").AddColumn("pending / allowed").AddColumn("acks").AddColumn("time");
        if (p is null)
        {
            table.AddRow("starting", "", "", "", "", "", "", "");
            return table;
        }
        var c = CultureInfo.InvariantCulture;
        table.AddRow(
            Markup.Escape(MigrationException.PhaseName(p.Phase)),
            p.Round.ToString(c),
            Units.FormatBytes(p.PreCopyBytes),
            Units.FormatBytes(p.StopCopyBytes),
            Units.FormatBytes(p.BandwidthBytesPerSecond) + "/s",
            p.Phase == MigrationPhase.PreCopy ? $"{Units.FormatBytes(p.PendingBytes)} / {Units.FormatBytes(p.ThresholdBytes)}" : "",
            p.AcksExpected > 0 ? string.Create(c, $"{p.AcksReceived}/{p.AcksExpected}") : "",
            p.Elapsed.TotalSeconds.ToString("0.00", c) + " s");
        if (p.Message is not null)
            table.Caption(Markup.Escape(p.Message));
        return table;
    }

    /// <summary>The summary table of a finished migration.</summary>
    public static Table Summary(MigrationStatistics s, TimeSpan downtimeLimit)
    {
        var c = CultureInfo.InvariantCulture;
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]migration summary[/]");
        table.AddColumn("item").AddColumn(new TableColumn("value").RightAligned());
        void Row(string k, string v) => table.AddRow(Markup.Escape(k), Markup.Escape(v));
        Row("devices", s.DeviceCount.ToString(c));
        Row("pre-copy", s.PreCopyUsed ? "yes" : "no (stop-copy only)");
        Row("P2P quiescing", s.P2PUsed ? "yes" : "no");
        Row("pre-copy rounds", s.Rounds.ToString(c));
        Row("pre-copy bytes", Units.FormatBytes(s.PreCopyBytes));
        Row("stop-copy bytes", Units.FormatBytes(s.StopCopyBytes));
        Row("stream bytes (framed)", Units.FormatBytes(s.StreamBytes));
        Row("pre-copy bandwidth", Units.FormatBytes(s.PreCopyBandwidthBytesPerSecond) + "/s");
        Row("stop-copy bandwidth", Units.FormatBytes(s.StopCopyBandwidthBytesPerSecond) + "/s");
        Row("pending at switchover", Units.FormatBytes(s.PendingBytesAtSwitchover));
        Row("downtime", string.Create(c, $"{s.Downtime.TotalMilliseconds:0.0} ms (limit {downtimeLimit.TotalMilliseconds:0.###} ms{(s.ForcedSwitchover ? ", forced switchover" : "")})"));
        Row("destination start", string.Create(c, $"{s.DestinationStartTime.TotalMilliseconds:0.0} ms"));
        Row("setup / pre-copy / stop-copy", string.Create(c, $"{s.SetupTime.TotalMilliseconds:0} / {s.PreCopyTime.TotalMilliseconds:0} / {s.StopCopyTime.TotalMilliseconds:0} ms"));
        Row("total time", string.Create(c, $"{s.TotalTime.TotalSeconds:0.00} s"));
        foreach (var w in s.Warnings)
            Row("warning", w);
        return table;
    }
}
