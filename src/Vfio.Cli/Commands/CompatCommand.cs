using System.CommandLine;
using System.Globalization;
using Vfio.Compat;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig compat --from X --to Y</c>: reads both devices' migration profiles and answers whether X can migrate
/// into Y, with every reason (the check migrate, send/receive and demo run before any source device stops).
/// Nothing changes on either device. Exit 0 compatible, 1 not compatible (or a device could not be read).
/// </summary>
internal static class CompatCommand
{
    public static Command Create()
    {
        var from = CliOptions.Device("--from", "Source device");
        var to = CliOptions.Device("--to", "Destination device");
        var noPreCopy = new Option<bool>("--no-precopy") { Description = "Answer for a stop-copy-only migration (the destination then needs no PRE_COPY)" };
        var connectTimeout = CliOptions.ConnectTimeout();
        var json = CliOptions.Json();
        var command = new Command("compat", "Answer whether a device can migrate into another, with every reason; changes nothing.")
        {
            from, to, noPreCopy, connectTimeout, json,
        };
        command.WithHelp(addresses: true,
            "vfio-mig compat --from unix:./a.sock --to unix:./b.sock",
            "vfio-mig compat --from sample:size=4MiB --to sample:size=8MiB     # not compatible: page_count differs",
            "vfio-mig compat --from vfio:A --to vfio:B --json | jq .reasons");
        CliOptions.RequireDifferentDevices(command, from, to, "");
        command.SetAction(async (parse, cancellationToken) =>
        {
            var src = parse.GetValue(from)!;
            var dst = parse.GetValue(to)!;
            var timeout = parse.GetValue(connectTimeout).Value;
            bool asJson = parse.GetValue(json);
            var progress = CliProgress.For(asJson);
            await using var source = await progress.StepAsync($"connecting to {src}", () => src.OpenAsync(timeout, cancellationToken).AsTask()).ConfigureAwait(false);
            await using var destination = await progress.StepAsync($"connecting to {dst}", () => dst.OpenAsync(timeout, cancellationToken).AsTask()).ConfigureAwait(false);
            var sourceProfile = await ReadAsync(source, "source", cancellationToken).ConfigureAwait(false);
            var destinationProfile = await ReadAsync(destination, "destination", cancellationToken).ConfigureAwait(false);
            // As migrate decides by default: pre-copy when the source offers it.
            bool preCopy = !parse.GetValue(noPreCopy) && (sourceProfile.Capabilities & VfioMigrationFlags.PreCopy) != 0;
            var report = CompatibilityCheck.Check(sourceProfile, destinationProfile, preCopy);

            if (asJson)
            {
                CliJsonContext.Write(Console.Out, new CompatJson(report.Compatible, src.ToString(), dst.ToString(), preCopy,
                    [.. report.Reasons.Select(f => new CompatFindingJson(f.Code, f.Message))], [.. report.Notes.Select(f => new CompatFindingJson(f.Code, f.Message))],
                    sourceProfile, destinationProfile), CliJsonContext.Default.CompatJson);
            }
            else
            {
                WriteText(Console.Out, src, dst, preCopy, report);
            }
            if (report.Compatible)
                return ExitCodes.Success;
            // The answer is on stdout; the error line tells a script reading only the exit code and stderr.
            return CliErrors.Report("compat", new VfioException(Errno.EOPNOTSUPP, "compat",
                string.Create(CultureInfo.InvariantCulture, $"{src} cannot migrate to {dst}: {report.Reasons.Count} reason{(report.Reasons.Count == 1 ? "" : "s")}")), Console.Error);
        });
        return command;
    }

    private static async Task<MigrationProfile> ReadAsync(IVfioMigrationDevice device, string side, CancellationToken cancellationToken)
    {
        try
        {
            return await device.GetProfileAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException ex)
        {
            throw new VfioException(ex.Errno, $"read the {side} profile", ex.Detail ?? ex.Message, ex);
        }
    }

    private static void WriteText(TextWriter o, DeviceAddress src, DeviceAddress dst, bool preCopy, CompatibilityReport report)
    {
        o.WriteLine($"{src} -> {dst}: {(report.Compatible ? "compatible" : "NOT compatible")}{(preCopy ? " (with pre-copy)" : " (stop-copy only)")}");
        foreach (var r in report.Reasons)
            o.WriteLine($"  reason [{r.Code}]: {r.Message}");
        foreach (var n in report.Notes)
            o.WriteLine($"  note [{n.Code}]: {n.Message}");
        o.WriteLine($"  source:      {Describe(report.Source)}");
        o.WriteLine($"  destination: {Describe(report.Destination)}");
        o.Flush();
    }

    private static string Describe(MigrationProfile p)
    {
        var id = p.Identity;
        var parts = new List<string> { id.Transport, "caps " + MigrationStateMachine.FormatCaps(p.Capabilities) };
        if (id.HasPciIds)
            parts.Add($"pci {id.VendorId:x4}:{id.DeviceId:x4} subsystem {id.SubsystemVendorId:x4}:{id.SubsystemId:x4}");
        if (id.Model is not null)
            parts.Add("model " + id.Model);
        if (id.Driver is not null)
            parts.Add($"driver {id.Driver} {id.DriverVersion}".TrimEnd());
        if (id.Server is not null)
            parts.Add(id.Server);
        if (p.Regions.Count > 0)
            parts.Add($"{p.Regions.Count} regions");
        if (p.StopCopySize is { } size)
            parts.Add("stop-copy " + Units.FormatExact((long)Math.Min(size, long.MaxValue)));
        if (p.Format is { } f)
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"format {f.Name} v{f.Version}"));
        return string.Join(", ", parts);
    }
}
