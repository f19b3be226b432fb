using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
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
        var size = CliOptions.DeviceSize("64MiB", "State size of each device (a multiple of 4KiB; binary suffixes: 64M = 64MiB)");
        var devices = CliOptions.Int("--devices", "Number of devices migrated together (1..64; more than one needs P2P: --caps 0x3 or 0x7)", 1, 1, 64);
        var dirtyRate = CliOptions.DirtyRate("8MiB/s");
        var caps = CliOptions.Caps("0x7");
        var downtime = CliOptions.DowntimeLimit();
        var maxRounds = CliOptions.Int("--max-rounds", "Pre-copy rounds before the non-convergence policy applies", MigrationOptions.Default.MaxRounds, 1, 100_000);
        var force = CliOptions.ForceSwitchover();
        var reinitAfter = CliOptions.Size("--reinit-after", "Each source device raises REINIT (new initial data) once after this many pre-copy bytes; the engine waits for a new switchover-ack", "0", 0, long.MaxValue);
        var noCompat = CliOptions.NoCompatCheck();
        var json = CliOptions.Json();
        var stateDir = MigrationRecords.StateDirOption();
        var record = FlightRecords.RecordOption();

        var command = new Command("demo", "Live-migrate in-process sample devices and verify the result by SHA-256.")
        {
            size, devices, dirtyRate, caps, downtime, maxRounds, force, reinitAfter, noCompat, json, stateDir, record,
        };
        command.WithHelp(addresses: false,
            "vfio-mig demo                                        # one 64MiB device, verified by SHA-256",
            "vfio-mig demo --size 1GiB --dirty-rate 16MiB/s --devices 2",
            "vfio-mig demo --caps 0x3 --devices 3                 # stop-copy only, quiesced through RUNNING_P2P",
            "vfio-mig demo --size 16MiB --reinit-after 8MiB       # REINIT mid-pre-copy: initial data acknowledged twice",
            "vfio-mig demo --size 4MiB --json | jq .migration.downtime_ms",
            "vfio-mig demo --record demo.jsonl && vfio-mig report demo.jsonl --svg demo.svg   # the timeline as a picture");
        command.Validators.Add(r =>
        {
            // Not given: the defaults (one device, 0x7) need no P2P check.
            if (r.ValueOrNull(devices) is > 1 and var n && r.ValueOrNull(caps) is { } c && (c.Flags & VfioMigrationFlags.P2P) == 0)
                r.AddError($"--devices: {n} devices migrate together only with P2P (--caps 0x3 or 0x7), so none runs while another still changes");
        });
        command.SetAction((parse, cancellationToken) => RunAsync(
            new DemoSettings(
                parse.GetValue(size).Bytes,
                parse.GetValue(devices),
                parse.GetValue(dirtyRate).BytesPerSecond,
                parse.GetValue(caps).Flags,
                parse.GetValue(downtime).Value,
                parse.GetValue(maxRounds),
                parse.GetValue(force),
                parse.GetValue(json),
                parse.GetValue(stateDir),
                parse.GetValue(record))
            {
                ReinitAfter = parse.GetValue(reinitAfter).Bytes,
                CheckCompatibility = !parse.GetValue(noCompat),
            },
            cancellationToken));
        return command;
    }

    internal sealed record DemoSettings(long Size, int Devices, long DirtyRate, VfioMigrationFlags Caps, TimeSpan DowntimeLimit, int MaxRounds, bool Force, bool Json, string? StateDir = null, string? Record = null)
    {
        /// <summary>Source devices raise REINIT once after this many pre-copy bytes (0 = never).</summary>
        public long ReinitAfter { get; init; }

        /// <summary>Run the pre-flight compatibility check (default).</summary>
        public bool CheckCompatibility { get; init; } = true;
    }

    internal static async Task<int> RunAsync(DemoSettings s, CancellationToken cancellationToken)
    {
        // The same durable records as migrate, send and receive (docs/commit-protocol.md, "Records").
        var id = Guid.NewGuid();
        var store = MigrationRecords.Open(s.StateDir);
        using var recorder = FlightRecords.Open(s.Record);
        var options = MigrationOptions.Default with
        {
            FlightRecorder = recorder,
            DowntimeLimit = s.DowntimeLimit,
            MaxRounds = s.MaxRounds,
            NonConvergence = s.Force ? NonConvergencePolicy.ForceSwitchover : NonConvergencePolicy.Fail,
            MigrationId = id,
            DecisionStore = store,
            CheckCompatibility = s.CheckCompatibility,
        };
        var progress = CliProgress.For(s.Json);
        progress.Line(string.Create(CultureInfo.InvariantCulture,
            $"demo: {s.Devices} sample device(s) of {Units.FormatBytes(s.Size)}, caps {MigrationStateMachine.FormatCaps(s.Caps)}, dirty rate {Units.FormatBytes(s.DirtyRate)}/s, downtime limit {s.DowntimeLimit.TotalMilliseconds:0.###} ms"));
        var sourceDevices = new List<SampleDevice>();
        var destinationDevices = new List<SampleDevice>();
        var sources = new List<IVfioMigrationDevice>();
        var destinations = new List<IVfioMigrationDevice>();
        try
        {
            // Filling large devices takes a while: make sources and destinations concurrently.
            var made = await progress.StepAsync(string.Create(CultureInfo.InvariantCulture, $"filling {2 * s.Devices} device(s) of {Units.FormatBytes(s.Size)}"),
                () => Task.WhenAll(Enumerable.Range(0, 2 * s.Devices).Select(k => Task.Run(() =>
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
                        ReinitAfterBytes = source ? s.ReinitAfter : 0,
                    });
                }, cancellationToken)))).ConfigureAwait(false);
            for (int i = 0; i < s.Devices; i++)
            {
                sourceDevices.Add(made[2 * i]);
                sources.Add(new InProcessMigrationDevice(made[2 * i], $"sample:src{i}"));
                destinationDevices.Add(made[(2 * i) + 1]);
                destinations.Add(new InProcessMigrationDevice(made[(2 * i) + 1], $"sample:dst{i}"));
            }

            progress.Line($"migration {id}: {s.Devices} source(s) -> {s.Devices} destination(s) (records in {store.Directory})");
            var view = progress.Migration(s.DowntimeLimit, s.Size * s.Devices);
            MigrationStatistics stats;
            try
            {
                stats = await view.RunAsync(p => MigrationEngine.MigrateAsync(sources, destinations, options, p, cancellationToken)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is MigrationException or OperationCanceledException)
            {
                throw CliException.WithHints(e, SourcesState(sourceDevices), $"migration {id}: its records are in {store.Directory}", FlightRecords.Hint(recorder, "demo", id, s.StateDir));
            }

            // Compare by SHA-256; several devices: SHA-256 over the concatenated per-device digests.
            var digests = await progress.StepAsync(string.Create(CultureInfo.InvariantCulture, $"hashing {2 * s.Devices} device(s) (SHA-256)"),
                () => Task.WhenAll(sourceDevices.Concat(destinationDevices).Select(d => Task.Run(d.ComputeSha256, CancellationToken.None)))).ConfigureAwait(false);
            var sourceDigests = digests.Take(s.Devices).ToList();
            var destinationDigests = digests.Skip(s.Devices).ToList();
            byte[] sourceHash = Combine(sourceDigests), destinationHash = Combine(destinationDigests);
            bool match = sourceHash.AsSpan().SequenceEqual(destinationHash);

            if (s.Json)
            {
                var perDevice = stats.Devices.Select((d, i) => new DemoDeviceJson(d.Index, d.Name, d.PreCopyBytes, d.StopCopyBytes, d.InitialDataAcknowledged,
                    Convert.ToHexStringLower(sourceDigests[i]), Convert.ToHexStringLower(destinationDigests[i]), d.Reinits)).ToList();
                CliJsonContext.Write(Console.Out, new DemoJson(match, id.ToString("D"), s.Size, MigrationStateMachine.FormatCaps(s.Caps), s.DirtyRate, s.DowntimeLimit.TotalMilliseconds,
                    MigrationJson.From(stats), perDevice, match, Convert.ToHexStringLower(sourceHash)), CliJsonContext.Default.DemoJson);
            }
            else
            {
                view.WriteSummary(stats);
            }

            if (!match)
            {
                var differing = Enumerable.Range(0, s.Devices).Where(i => !sourceDigests[i].AsSpan().SequenceEqual(destinationDigests[i]))
                    .Select(i => $"device {i}: source sha256 {Convert.ToHexStringLower(sourceDigests[i])}, destination sha256 {Convert.ToHexStringLower(destinationDigests[i])}");
                throw new CliException(ExitCodes.VerificationMismatch, Errno.EIO, "verify",
                    $"MISMATCH: destination differs from source (source sha256 {Convert.ToHexStringLower(sourceHash)}, destination sha256 {Convert.ToHexStringLower(destinationHash)})", [.. differing]);
            }
            progress.Line($"verified: destination matches source (sha256 {Convert.ToHexStringLower(sourceHash)})");
            return ExitCodes.Success;
        }
        finally
        {
            foreach (var d in sourceDevices.Concat(destinationDevices))
                d.Dispose();
        }
    }

    private static string SourcesState(List<SampleDevice> sourceDevices)
        => sourceDevices.Count == 0 ? "no device was made"
            : sourceDevices.All(d => d.State == VfioMigrationState.Running) ? "the source devices are RUNNING again; nothing was lost"
            : "WARNING: a source device is not RUNNING";

    /// <summary>One device: its SHA-256. Several: SHA-256 of the per-device digests concatenated in device order.</summary>
    internal static byte[] Combine(IReadOnlyList<byte[]> digests)
        => digests.Count == 1 ? digests[0] : SHA256.HashData(digests.SelectMany(d => d).ToArray());
}
