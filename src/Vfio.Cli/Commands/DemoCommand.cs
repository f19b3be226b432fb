using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Spectre.Console;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig demo</c>: live-migrates sample devices in process (sources seeded 1.., destinations 1001..),
/// shows progress and a summary, then proves the destination equals the source by SHA-256.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var size = new Option<string>("--size") { Description = "State size of each device (e.g. 64MiB, 1GiB)", DefaultValueFactory = _ => "64MiB" };
        var devices = new Option<int>("--devices") { Description = "Number of devices migrated together", DefaultValueFactory = _ => 1 };
        var dirtyRate = new Option<string>("--dirty-rate") { Description = "Bytes per second each source's workload dirties (e.g. 8MiB/s, 0)", DefaultValueFactory = _ => "8MiB/s" };
        var caps = new Option<string>("--caps") { Description = "Capabilities of every device: 0x1, 0x3, 0x5 or 0x7", DefaultValueFactory = _ => "0x7" };
        var downtime = new Option<string>("--downtime-limit") { Description = "Allowed downtime (e.g. 300ms)", DefaultValueFactory = _ => "300ms" };
        var maxRounds = new Option<int>("--max-rounds") { Description = "Pre-copy rounds before giving up", DefaultValueFactory = _ => MigrationOptions.Default.MaxRounds };
        var force = new Option<bool>("--force-switchover") { Description = "Switch over anyway when pre-copy does not converge (default: fail, sources keep running)" };
        var json = new Option<bool>("--json") { Description = "Print a machine-readable summary (JSON) on stdout; progress goes to stderr" };

        var command = new Command("demo", "Live-migrate in-process sample devices and verify the result by SHA-256.")
        {
            size, devices, dirtyRate, caps, downtime, maxRounds, force, json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                var settings = new DemoSettings(
                    Units.ParseBytes(parse.GetValue(size)!, "size"),
                    parse.GetValue(devices),
                    Units.ParseRate(parse.GetValue(dirtyRate)!, "dirty-rate"),
                    Units.ParseCaps(parse.GetValue(caps)!),
                    Units.ParseDuration(parse.GetValue(downtime)!, "downtime-limit"),
                    parse.GetValue(maxRounds),
                    parse.GetValue(force),
                    parse.GetValue(json));
                return await RunAsync(settings, cancellationToken).ConfigureAwait(false);
            }
            catch (VfioException ex)
            {
                await Console.Error.WriteLineAsync(ex.Message).ConfigureAwait(false);
                return 2;
            }
        });
        return command;
    }

    internal sealed record DemoSettings(long Size, int Devices, long DirtyRate, VfioMigrationFlags Caps, TimeSpan DowntimeLimit, int MaxRounds, bool Force, bool Json);

    internal static async Task<int> RunAsync(DemoSettings s, CancellationToken cancellationToken)
    {
        if (s.Devices is < 1 or > 64)
            throw new VfioException(Errno.EINVAL, "parse --devices", $"{s.Devices} devices; use 1 to 64");
        if (s.MaxRounds < 1)
            throw new VfioException(Errno.EINVAL, "parse --max-rounds", "at least one round is needed");
        if (s.Size < 4096 || s.Size % 4096 != 0)
            throw new VfioException(Errno.EINVAL, "parse --size", $"{s.Size} bytes; the size must be a positive multiple of 4 KiB");

        var options = MigrationOptions.Default with
        {
            DowntimeLimit = s.DowntimeLimit,
            MaxRounds = s.MaxRounds,
            NonConvergence = s.Force ? NonConvergencePolicy.ForceSwitchover : NonConvergencePolicy.Fail,
        };
        var sourceDevices = new List<SampleDevice>();
        var destinationDevices = new List<SampleDevice>();
        var sources = new List<IVfioMigrationDevice>();
        var destinations = new List<IVfioMigrationDevice>();
        try
        {
            // Filling large devices takes a while: make sources and destinations concurrently.
            var made = await Task.WhenAll(Enumerable.Range(0, 2 * s.Devices).Select(k => Task.Run(() =>
            {
                int i = k / 2;
                bool source = k % 2 == 0;
                // Destinations start from different content and run no workload, so the final comparison is exact.
                return new SampleDevice(new SampleDeviceOptions
                {
                    SizeBytes = s.Size,
                    Capabilities = s.Caps,
                    DirtyRateBytesPerSecond = source ? s.DirtyRate : 0,
                    Seed = source ? i + 1 : i + 1001,
                });
            }, cancellationToken))).ConfigureAwait(false);
            for (int i = 0; i < s.Devices; i++)
            {
                sourceDevices.Add(made[2 * i]);
                sources.Add(new InProcessMigrationDevice(made[2 * i], $"sample:src{i}"));
                destinationDevices.Add(made[(2 * i) + 1]);
                destinations.Add(new InProcessMigrationDevice(made[(2 * i) + 1], $"sample:dst{i}"));
            }

            var info = s.Json ? Console.Error : Console.Out;
            bool live = !s.Json && MigrationProgressView.IsTerminal;
            await info.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"demo: {s.Devices} sample device(s) of {Units.FormatBytes(s.Size)}, caps {MigrationStateMachine.FormatCaps(s.Caps)}, dirty rate {Units.FormatBytes(s.DirtyRate)}/s, downtime limit {s.DowntimeLimit.TotalMilliseconds:0.###} ms")).ConfigureAwait(false);
            var view = new MigrationProgressView(live, info, s.DowntimeLimit);
            MigrationStatistics stats;
            try
            {
                stats = await view.RunAsync(p => MigrationEngine.MigrateAsync(sources, destinations, options, p, cancellationToken)).ConfigureAwait(false);
            }
            catch (MigrationException ex)
            {
                await Console.Error.WriteLineAsync(ex.Message).ConfigureAwait(false);
                foreach (var r in ex.RecoveryErrors)
                    await Console.Error.WriteLineAsync("recovery: " + r).ConfigureAwait(false);
                await ReportSourcesAsync(sourceDevices).ConfigureAwait(false);
                return 2;
            }
            catch (OperationCanceledException)
            {
                await Console.Error.WriteLineAsync("ECANCELED: the migration was canceled").ConfigureAwait(false);
                await ReportSourcesAsync(sourceDevices).ConfigureAwait(false);
                return 130;
            }

            // Compare by SHA-256; several devices: SHA-256 over the concatenated per-device digests.
            var digests = await Task.WhenAll(sourceDevices.Concat(destinationDevices).Select(d => Task.Run(d.ComputeSha256, CancellationToken.None))).ConfigureAwait(false);
            var sourceDigests = digests.Take(s.Devices).ToList();
            var destinationDigests = digests.Skip(s.Devices).ToList();
            byte[] sourceHash = Combine(sourceDigests), destinationHash = Combine(destinationDigests);
            bool match = sourceHash.AsSpan().SequenceEqual(destinationHash);

            if (s.Json)
            {
                await WriteJsonAsync(stats, s, sourceDigests, destinationDigests, Convert.ToHexStringLower(sourceHash), match).ConfigureAwait(false);
            }
            else
            {
                AnsiConsole.Write(MigrationProgressView.Summary(stats, s.DowntimeLimit));
            }

            var last = s.Json ? Console.Error : Console.Out;
            if (!match)
            {
                for (int i = 0; i < sourceDigests.Count; i++)
                {
                    if (!sourceDigests[i].AsSpan().SequenceEqual(destinationDigests[i]))
                        await Console.Error.WriteLineAsync($"device {i}: source sha256 {Convert.ToHexStringLower(sourceDigests[i])}, destination sha256 {Convert.ToHexStringLower(destinationDigests[i])}").ConfigureAwait(false);
                }
                await last.WriteLineAsync($"MISMATCH: destination differs from source (source sha256 {Convert.ToHexStringLower(sourceHash)}, destination sha256 {Convert.ToHexStringLower(destinationHash)})").ConfigureAwait(false);
                return 1;
            }
            await last.WriteLineAsync($"verified: destination matches source (sha256 {Convert.ToHexStringLower(sourceHash)})").ConfigureAwait(false);
            return 0;
        }
        finally
        {
            foreach (var d in sourceDevices.Concat(destinationDevices))
                d.Dispose();
        }
    }

    private static Task ReportSourcesAsync(List<SampleDevice> sourceDevices)
    {
        bool intact = sourceDevices.All(d => d.State == VfioMigrationState.Running);
        return Console.Error.WriteLineAsync(intact ? "the source devices are RUNNING again; nothing was lost" : "WARNING: a source device is not RUNNING");
    }

    /// <summary>One device: its SHA-256. Several: SHA-256 of the per-device digests concatenated in device order.</summary>
    internal static byte[] Combine(IReadOnlyList<byte[]> digests)
        => digests.Count == 1 ? digests[0] : SHA256.HashData(digests.SelectMany(d => d).ToArray());

    private static async Task WriteJsonAsync(MigrationStatistics st, DemoSettings s, List<byte[]> src, List<byte[]> dst, string combined, bool match)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("devices", st.DeviceCount);
            w.WriteNumber("sizeBytes", s.Size);
            w.WriteString("caps", MigrationStateMachine.FormatCaps(s.Caps));
            w.WriteNumber("dirtyRateBytesPerSecond", s.DirtyRate);
            w.WriteNumber("downtimeLimitMs", s.DowntimeLimit.TotalMilliseconds);
            w.WriteBoolean("preCopyUsed", st.PreCopyUsed);
            w.WriteBoolean("p2pUsed", st.P2PUsed);
            w.WriteNumber("rounds", st.Rounds);
            w.WriteNumber("preCopyBytes", st.PreCopyBytes);
            w.WriteNumber("stopCopyBytes", st.StopCopyBytes);
            w.WriteNumber("streamBytes", st.StreamBytes);
            w.WriteNumber("preCopyBandwidthBytesPerSecond", Math.Round(st.PreCopyBandwidthBytesPerSecond));
            w.WriteNumber("stopCopyBandwidthBytesPerSecond", Math.Round(st.StopCopyBandwidthBytesPerSecond));
            w.WriteNumber("pendingBytesAtSwitchover", st.PendingBytesAtSwitchover);
            w.WriteBoolean("forcedSwitchover", st.ForcedSwitchover);
            w.WriteNumber("setupMs", Math.Round(st.SetupTime.TotalMilliseconds, 3));
            w.WriteNumber("preCopyMs", Math.Round(st.PreCopyTime.TotalMilliseconds, 3));
            w.WriteNumber("stopCopyMs", Math.Round(st.StopCopyTime.TotalMilliseconds, 3));
            w.WriteNumber("destinationStartMs", Math.Round(st.DestinationStartTime.TotalMilliseconds, 3));
            w.WriteNumber("downtimeMs", Math.Round(st.Downtime.TotalMilliseconds, 3));
            w.WriteNumber("totalMs", Math.Round(st.TotalTime.TotalMilliseconds, 3));
            w.WriteStartArray("perDevice");
            for (int i = 0; i < st.Devices.Count; i++)
            {
                var d = st.Devices[i];
                w.WriteStartObject();
                w.WriteNumber("index", d.Index);
                w.WriteString("name", d.Name);
                w.WriteNumber("preCopyBytes", d.PreCopyBytes);
                w.WriteNumber("stopCopyBytes", d.StopCopyBytes);
                w.WriteBoolean("initialDataAcknowledged", d.InitialDataAcknowledged);
                w.WriteString("sourceSha256", Convert.ToHexStringLower(src[i]));
                w.WriteString("destinationSha256", Convert.ToHexStringLower(dst[i]));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("warnings");
            foreach (var warning in st.Warnings)
                w.WriteStringValue(warning);
            w.WriteEndArray();
            w.WriteBoolean("verified", match);
            w.WriteString("sha256", combined);
            w.WriteEndObject();
        }
        await Console.Out.WriteLineAsync(System.Text.Encoding.UTF8.GetString(buffer.ToArray())).ConfigureAwait(false);
    }
}
