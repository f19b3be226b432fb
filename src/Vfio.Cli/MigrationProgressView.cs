using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;
using Vfio.Engine;

namespace Vfio.Cli;

/// <summary>
/// The one view of a running migration (demo, migrate, send, receive): a Spectre live table on a terminal,
/// plain lines otherwise (on phase changes and about once a second), with the same names in both — phase,
/// round, moved, pending / allowed, bandwidth, acks, time — then a summary table.
/// </summary>
/// <remarks>
/// The engine measures pending bytes once per pre-copy round; between measurements the view counts down what
/// the round has moved since, so the figure is live. Before the first measurement it starts from the
/// estimate the command gave (the device sizes), or shows "measuring".
/// </remarks>
internal sealed class MigrationProgressView : IProgress<MigrationProgress>
{
    private readonly CliProgress _output;
    private readonly TimeSpan _downtimeLimit;
    private readonly Lock _lock = new();
    private MigrationProgress? _latest;
    private MigrationPhase _lastPrintedPhase;
    private TimeSpan _lastPrinted = TimeSpan.MinValue;
    private long _measuredPending;
    private long _movedAtMeasurement;
    private int _measuredRound = -1;

    public MigrationProgressView(CliProgress output, TimeSpan downtimeLimit, long estimatedBytes)
    {
        _output = output;
        _downtimeLimit = downtimeLimit;
        _measuredPending = estimatedBytes;
        _measuredRound = estimatedBytes > 0 ? 0 : -1;
    }

    public void Report(MigrationProgress value)
    {
        lock (_lock)
        {
            if (value.PendingBytes > 0 && (value.Round != _measuredRound || value.PendingBytes != _measuredPending))
            {
                _measuredRound = value.Round;
                _measuredPending = value.PendingBytes;
                _movedAtMeasurement = value.PreCopyBytes;
            }
            _latest = value;
            if (_output.Live)
                return;
            bool phaseChanged = value.Phase != _lastPrintedPhase;
            if (!phaseChanged && value.Message is null && value.Elapsed - _lastPrinted < TimeSpan.FromSeconds(1))
                return;
            _lastPrintedPhase = value.Phase;
            _lastPrinted = value.Elapsed;
        }
        _output.Line(FormatLine(value));
    }

    /// <summary>Runs <paramref name="migrate"/> with this view reporting, live or plain.</summary>
    public async Task<T> RunAsync<T>(Func<IProgress<MigrationProgress>, Task<T>> migrate)
    {
        if (!_output.Live || _output.Console is null)
            return await migrate(this).ConfigureAwait(false);
        T result = default!;
        await _output.Console.Live(BuildTable(null)).AutoClear(false).StartAsync(async ctx =>
        {
            var task = migrate(this);
            while (!task.IsCompleted)
            {
                ctx.UpdateTarget(BuildTable(Latest));
                ctx.Refresh();
                await Task.WhenAny(task, Task.Delay(100)).ConfigureAwait(false);
            }
            ctx.UpdateTarget(BuildTable(Latest));
            ctx.Refresh();
            result = await task.ConfigureAwait(false);
        }).ConfigureAwait(false);
        return result;
    }

    /// <summary>Prints the summary table of a finished migration.</summary>
    public void WriteSummary(MigrationStatistics statistics)
    {
        var table = Summary(statistics, _downtimeLimit);
        if (_output.Console is not null)
        {
            _output.Console.Write(table);
            return;
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(_output.Out), Ansi = AnsiSupport.No, Interactive = InteractionSupport.No });
        console.Profile.Width = 100;
        console.Write(table);
    }

    private MigrationProgress? Latest
    {
        get
        {
            lock (_lock)
                return _latest;
        }
    }

    /// <summary>Pending bytes now: the last measurement minus what pre-copy moved since; null while unknown.</summary>
    private long? LivePending(MigrationProgress p)
    {
        lock (_lock)
        {
            if (_measuredRound < 0)
                return null;
            return Math.Max(0, _measuredPending - (p.PreCopyBytes - _movedAtMeasurement));
        }
    }

    private string PendingText(MigrationProgress p)
        => LivePending(p) is { } pending
            ? $"{Units.FormatBytes(pending)} / {Units.FormatBytes(p.ThresholdBytes)}"
            : $"measuring / {Units.FormatBytes(p.ThresholdBytes)}";

    /// <summary>One plain progress line.</summary>
    public string FormatLine(MigrationProgress p)
    {
        var c = CultureInfo.InvariantCulture;
        string line = string.Create(c, $"[{p.Elapsed.TotalSeconds,7:0.00}s] phase {MigrationException.PhaseName(p.Phase),-10} round {p.Round,3}  moved {Units.FormatBytes(p.TotalBytes),10}  bandwidth {Units.FormatBytes(p.BandwidthBytesPerSecond)}/s");
        if (p.Phase == MigrationPhase.PreCopy)
            line += string.Create(c, $"  pending / allowed {PendingText(p)} ({_downtimeLimit.TotalMilliseconds:0.###} ms)");
        if (p.AcksExpected > 0)
            line += string.Create(c, $"  acks {p.AcksReceived}/{p.AcksExpected}");
        if (p.Message is not null)
            line += "  " + p.Message;
        return line;
    }

    // A vertical table (name, value): it never wraps on an 80-column terminal.
    private Table BuildTable(MigrationProgress? p)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]live migration[/]");
        table.AddColumn("").AddColumn(new TableColumn("").RightAligned()).HideHeaders();
        void Row(string name, string value) => table.AddRow(new Text(name), new Text(value));
        if (p is null)
        {
            Row("phase", "starting");
            return table;
        }
        var c = CultureInfo.InvariantCulture;
        Row("phase", MigrationException.PhaseName(p.Phase));
        Row("round", p.Round.ToString(c));
        Row("moved", $"{Units.FormatBytes(p.TotalBytes)} (pre-copy {Units.FormatBytes(p.PreCopyBytes)}, stop-copy {Units.FormatBytes(p.StopCopyBytes)})");
        Row("pending / allowed", p.Phase == MigrationPhase.PreCopy ? PendingText(p) : "");
        Row("bandwidth", Units.FormatBytes(p.BandwidthBytesPerSecond) + "/s");
        Row("acks", p.AcksExpected > 0 ? string.Create(c, $"{p.AcksReceived}/{p.AcksExpected}") : "");
        Row("time", p.Elapsed.TotalSeconds.ToString("0.00", c) + " s");
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
        void Row(string k, string v) => table.AddRow((IRenderable)new Text(k), new Text(v));
        Row("devices", s.DeviceCount.ToString(c));
        Row("pre-copy", s.PreCopyUsed ? "yes" : "no (stop-copy only)");
        Row("P2P quiescing", s.P2PUsed ? "yes" : "no");
        Row("pre-copy rounds", s.Rounds.ToString(c));
        if (s.Devices.Sum(d => d.Reinits) is > 0 and var reinits)
            Row("REINIT (new initial data)", string.Create(c, $"{reinits}, each acknowledged again before the switchover"));
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
