using System.CommandLine;
using Vfio.Conformance;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig check DEVICE</c>: the conformance checker (docs/cli/check.md, docs/conformance.md).</summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var device = new Argument<string>("device") { Description = DeviceTransports.Describe("Device to check"), HelpName = "ADDRESS" };
        device.Validators.Add(r =>
        {
            try
            {
                DeviceAddress.Parse(r.Tokens[0].Value);
            }
            catch (VfioException e)
            {
                r.AddError(e.Message);
            }
        });
        var json = CliOptions.Json();
        var connectTimeout = CliOptions.ConnectTimeout();
        var only = new Option<string[]>("--only")
        {
            Description = $"Run only these groups (repeatable or comma-separated): {string.Join(", ", ConformanceGroups.Selectable)}",
            AllowMultipleArgumentsPerToken = false,
        };
        var destructive = new Option<bool>("--allow-destructive") { Description = "Allow loading migration data into the device itself (overwrites its state)" };
        var peer = new Option<string?>("--peer") { Description = "A second compatible device to resume into (it is overwritten)" };
        var strict = new Option<bool>("--strict") { Description = "Treat warnings (e.g. 0 instead of ENOMSG) as failures" };
        var junit = new Option<string?>("--junit") { Description = "Also write the report as JUnit XML to this file (for CI)" };

        var command = new Command("check", "Check a migration-capable device against the VFIO migration v2 protocol rules.")
        {
            device, json, only, destructive, peer, strict, junit, connectTimeout,
        };
        command.WithHelp(addresses: true,
            "vfio-mig check sample:size=4MiB",
            "vfio-mig check sample:size=4MiB,fault=reuse-stream     # a deliberately broken device fails sessions.stale-stream",
            "vfio-mig check unix:./a.sock --allow-destructive --json",
            "vfio-mig check vfio:A --peer vfio:B");
        command.SetAction((parse, cancellationToken) => RunAsync(
            new CheckSettings(parse.GetValue(device)!, parse.GetValue(json), parse.GetValue(only) ?? [], parse.GetValue(destructive), parse.GetValue(peer), parse.GetValue(strict), parse.GetValue(junit), parse.GetValue(connectTimeout).Value),
            Console.Out, Console.Error, cancellationToken));
        return command;
    }

    internal sealed record CheckSettings(string Device, bool Json, IReadOnlyList<string> Only, bool AllowDestructive, string? Peer, bool Strict, string? Junit = null, TimeSpan? ConnectTimeout = null);

    /// <summary>Runs the check; 0 = conformant (no rule failed), 1 = not conformant or the device could not be opened, 2 = usage or report-file error.</summary>
    internal static async Task<int> RunAsync(CheckSettings settings, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        try
        {
            return await CheckAsync(settings, stdout, cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the shared error path prints every failure as one line
        catch (Exception e)
#pragma warning restore CA1031
        {
            return CliErrors.Report("check", e, stderr);
        }
    }

    private static async Task<int> CheckAsync(CheckSettings settings, TextWriter stdout, CancellationToken cancellationToken)
    {
        var groups = settings.Only.SelectMany(g => g.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).Distinct().ToList();
        foreach (var g in groups)
        {
            if (!ConformanceGroups.Selectable.Contains(g))
                throw CliException.Usage("--only", $"'{g}' is not a group (one of {string.Join(", ", ConformanceGroups.Selectable)})");
        }

        IVfioMigrationDevice? device = null, peerDevice = null;
        try
        {
            var timeout = settings.ConnectTimeout ?? CliOptions.DefaultConnectTimeout;
            var address = ParseAddress(settings.Device);
            var peerAddress = settings.Peer is { } peerText ? ParseAddress(peerText) : null;
            device = await address.OpenAsync(timeout, cancellationToken).ConfigureAwait(false);
            if (peerAddress is not null)
                peerDevice = await peerAddress.OpenAsync(timeout, cancellationToken).ConfigureAwait(false);

            var hints = device as IConformanceHints;
            var options = new ConformanceOptions
            {
                Groups = groups,
                AllowDestructive = settings.AllowDestructive,
                Peer = peerDevice,
                Strict = settings.Strict,
                DeterministicStreams = hints?.DeterministicStreams ?? false,
                GenerateDeviceWrites = hints is { CanGenerateDeviceWrites: true } ? hints.GenerateDeviceWritesAsync : null,
            };
            var report = await ConformanceChecker.RunAsync(device, options, cancellationToken).ConfigureAwait(false);
            if (settings.Json)
                await stdout.WriteLineAsync(ToJson(report)).ConfigureAwait(false);
            else
                await stdout.WriteAsync(FormatText(report)).ConfigureAwait(false);
            if (settings.Junit is { } junitPath)
            {
                try
                {
                    await File.WriteAllTextAsync(junitPath, ConformanceJUnit.Format(report), cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new CliException(ExitCodes.Usage, Errno.EIO, $"--junit {junitPath}", $"the report could not be written ({ex.Message})");
                }
            }
            return report.Conformant ? ExitCodes.Success : ExitCodes.Failed;
        }
        finally
        {
            if (peerDevice is not null)
                await peerDevice.DisposeAsync().ConfigureAwait(false);
            if (device is not null)
                await device.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static DeviceAddress ParseAddress(string text)
    {
        try
        {
            return DeviceAddress.Parse(text);
        }
        catch (VfioException e)
        {
            throw CliException.WithExitCode(e, ExitCodes.Usage);
        }
    }

    internal static string ToJson(ConformanceReport report) => CliJsonContext.Serialize(report, CliJsonContext.Default.ConformanceReport);

    /// <summary>One table per group (rule, spec, verdict, detail) and the summary line.</summary>
    internal static string FormatText(ConformanceReport report)
    {
        var w = new StringWriter { NewLine = "\n" };
        w.WriteLine($"vfio-mig check {report.Device}{(report.Capabilities.Length > 0 ? $" (caps {report.Capabilities})" : "")}");
        int ruleWidth = Math.Max(4, report.Results.Count == 0 ? 0 : report.Results.Max(r => r.Rule.Length));
        int specWidth = Math.Max(4, report.Results.Count == 0 ? 0 : report.Results.Max(r => r.Spec.Length));
        foreach (var group in report.Results.GroupBy(r => r.Group))
        {
            w.WriteLine();
            w.WriteLine($"== {group.Key}");
            w.WriteLine($"{"RULE".PadRight(ruleWidth)}  {"SPEC".PadRight(specWidth)}  {"VERDICT",-7}  DETAIL");
            foreach (var r in group)
            {
                string verdict = r.Verdict switch
                {
                    ConformanceVerdict.Pass => "PASS",
                    ConformanceVerdict.Fail => "FAIL",
                    ConformanceVerdict.Blocked => "BLOCKED",
                    _ => "SKIP",
                };
                string detail = r.Warning is null ? r.Detail : $"{r.Detail} [warning: {r.Warning}]";
                if (r.BlockedBy is { } cause)
                    detail = $"[by {cause}] {detail}";
                w.WriteLine($"{r.Rule.PadRight(ruleWidth)}  {r.Spec.PadRight(specWidth)}  {verdict,-7}  {detail}");
            }
        }
        w.WriteLine();
        if (report.DeviceLost is { } lost)
            w.WriteLine($"the device stopped answering during {lost.Rule}: {lost.Detail}; the rules after it are BLOCKED");
        w.WriteLine(report.Summary);
        return w.ToString();
    }
}
