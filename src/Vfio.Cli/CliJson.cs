using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Vfio.Conformance;

namespace Vfio.Cli;

/// <summary>
/// The one JSON context of the CLI: source-generated, snake_case keys, indented. Every <c>--json</c> document is
/// one of the records below (schemas in docs/cli/*.md); a new command adds its record here.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(ErrorJson))]
[JsonSerializable(typeof(DemoJson))]
[JsonSerializable(typeof(MigrateJson))]
[JsonSerializable(typeof(MigrateFailureJson))]
[JsonSerializable(typeof(SendJson))]
[JsonSerializable(typeof(ReceiveJson))]
[JsonSerializable(typeof(InfoJson))]
[JsonSerializable(typeof(KernelInfoJson))]
[JsonSerializable(typeof(PathJson))]
[JsonSerializable(typeof(ServeJson))]
[JsonSerializable(typeof(ResolveJson))]
[JsonSerializable(typeof(StateJson))]
[JsonSerializable(typeof(TokenJson))]
[JsonSerializable(typeof(ConformanceReport))]
[JsonSerializable(typeof(BenchJson))]
[JsonSerializable(typeof(CompatJson))]
[JsonSerializable(typeof(ReportJson))]
internal sealed partial class CliJsonContext : JsonSerializerContext
{
    // The output is read by people and scripts, never embedded in HTML: "§", "→" and "—" stay readable.
    // Made on first use: the generated Default is not set yet while this class's static fields initialize.
    private static CliJsonContext? s_readable;

    private static CliJsonContext Readable => s_readable ??= new(new JsonSerializerOptions(Default.Options) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    /// <summary>Writes <paramref name="value"/> as one JSON document and a newline.</summary>
    public static void Write<T>(TextWriter writer, T value, JsonTypeInfo<T> type)
    {
        writer.WriteLine(Serialize(value, type));
        writer.Flush();
    }

    /// <summary><paramref name="value"/> as the JSON document <see cref="Write"/> prints.</summary>
    public static string Serialize<T>(T value, JsonTypeInfo<T> type)
        => JsonSerializer.Serialize(value, (JsonTypeInfo<T>)Readable.GetTypeInfo(type.Type)!);
}

/// <summary>A failure under <c>--json</c>: printed on stdout as well as the error line on stderr.</summary>
internal sealed record ErrorJson(bool Ok, string Command, string Errno, string Error, int ExitCode);

/// <summary>Statistics every migrating command reports (demo, migrate, send, receive).</summary>
internal sealed record MigrationJson(
    int Devices, bool PreCopyUsed, bool P2pUsed, int Rounds, long PreCopyBytes, long StopCopyBytes, long TotalBytes, long StreamBytes,
    double PreCopyBytesPerSecond, double StopCopyBytesPerSecond, long PendingBytesAtSwitchover, bool ForcedSwitchover,
    double SetupMs, double PreCopyMs, double StopCopyMs, double DestinationStartMs, double DowntimeMs, double TotalMs, IReadOnlyList<string> Warnings)
{
    public static MigrationJson From(Vfio.Engine.MigrationStatistics s) => new(
        s.DeviceCount, s.PreCopyUsed, s.P2PUsed, s.Rounds, s.PreCopyBytes, s.StopCopyBytes, s.TotalBytes, s.StreamBytes,
        Math.Round(s.PreCopyBandwidthBytesPerSecond), Math.Round(s.StopCopyBandwidthBytesPerSecond), s.PendingBytesAtSwitchover, s.ForcedSwitchover,
        Ms(s.SetupTime), Ms(s.PreCopyTime), Ms(s.StopCopyTime), Ms(s.DestinationStartTime), Ms(s.Downtime), Ms(s.TotalTime), [.. s.Warnings]);

    private static double Ms(TimeSpan t) => Math.Round(t.TotalMilliseconds, 3);
}

internal sealed record DemoDeviceJson(int Index, string Name, long PreCopyBytes, long StopCopyBytes, bool InitialDataAcknowledged, string SourceSha256, string DestinationSha256, int Reinits);

internal sealed record DemoJson(bool Ok, string MigrationId, long SizeBytes, string Caps, long DirtyRateBytesPerSecond, double DowntimeLimitMs, MigrationJson Migration,
    IReadOnlyList<DemoDeviceJson> PerDevice, bool Verified, string Sha256);

internal sealed record MigrateJson(bool Ok, string MigrationId, string From, string To, double DowntimeLimitMs, MigrationJson Migration, string Verification, string? Sha256, string? VerificationNote);

/// <summary>A failed <c>migrate</c> under --json: the error document plus the migration id and, when held, the resolve command.</summary>
internal sealed record MigrateFailureJson(bool Ok, string Command, string Errno, string Error, int ExitCode, string MigrationId, bool Held, string? Resolve);

internal sealed record SendJson(bool Ok, string MigrationId, string From, string To, int Channels, string Security, MigrationJson Migration, double ThroughputBytesPerSecond,
    string Verification, string SourceSha256, string DestinationSha256, string? DigestKind, string? Note);

internal sealed record ReceiveJson(bool Ok, string MigrationId, string Into, string Listen, string Peer, int Channels, MigrationJson Migration, long ReorderPeakBytes, long ReorderCapacityBytes,
    string Verification, string DestinationSha256, string? Note);

internal sealed record RegionJson(uint Index, string Name, ulong Size, uint Flags);

internal sealed record IrqJson(uint Index, string Name, uint Count, uint Flags);

internal sealed record MigrationInfoJson(string? Caps, string? State, ulong? StopCopySize, string? Error);

internal sealed record InfoJson(string Device, string Protocol, int MaxDataXferSize, int MaxMsgFds, bool TwinSocket, int SocketSendBuffer, int SocketReceiveBuffer,
    uint Flags, IReadOnlyList<RegionJson> Regions, IReadOnlyList<IrqJson> Irqs, MigrationInfoJson Migration);

internal sealed record KernelRegionJson(uint Index, ulong Size, ulong Offset);

internal sealed record KernelInfoJson(string Device, string Bus, string Iommu, uint Flags, IReadOnlyList<KernelRegionJson> Regions, MigrationInfoJson Migration);

internal sealed record PathRowJson(string Caps, string From, string To, string Path, bool Succeeds);

internal sealed record PathJson(IReadOnlyList<PathRowJson> Paths);

internal sealed record ServeJson(bool Ok, string Socket, string Device, long SizeBytes, string Caps, int Connections);

/// <summary><c>resolve</c> and <c>recover</c>: the decision and what was done to each device. <c>decision</c> is null when unknown.</summary>
internal sealed record ResolveJson(string MigrationId, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Decision, bool DecidedNow, bool Ok,
    IReadOnlyList<ResolvedDeviceJson> Devices, string? SourceHostCommand);

/// <summary>One device of a resolution; <c>state</c> is null when the device did not answer.</summary>
internal sealed record ResolvedDeviceJson(string Side, string Address, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? State, string Action, bool Ok);

internal sealed record StateJson(string Address, string State, IReadOnlyList<StateMigrationJson> Migrations);

/// <summary>One record naming the device; <c>decision</c> is null when none is recorded here.</summary>
internal sealed record StateMigrationJson(string MigrationId, string Side, string Status, bool Unresolved, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Decision, string Detail);

/// <summary><c>token new --json</c>: the token (only without --output) or the file it was written to.</summary>
internal sealed record TokenJson(bool Ok, string? Token, string? File);

/// <summary><c>bench --json</c>: paired runs per series against the raw reference, and the headline against the target.</summary>
internal sealed record BenchJson(string Bench, long SizeBytes, int Runs, int Cpus, string LoadAverage, string RawReferenceTool, IReadOnlyList<string> RawReferences, string HeadlineSeries, double HeadlineRatio, double TargetRatio, bool TargetMet,
    IReadOnlyList<BenchSeriesJson> Series);

internal sealed record BenchSeriesJson(string Name, string Reference, double MedianRatio, IReadOnlyList<BenchPairJson> Pairs, IReadOnlyDictionary<string, double> Context);

internal sealed record BenchPairJson(long Bytes, double Seconds, double? CpuSeconds, double BytesPerSecond, double RawSeconds, double? RawCpuSeconds, double RawBytesPerSecond, double Ratio);

/// <summary><c>vfio-mig compat --json</c>: the answer, every reason and note, and both profiles.</summary>
internal sealed record CompatJson(bool Compatible, string From, string To, bool PreCopy, IReadOnlyList<CompatFindingJson> Reasons, IReadOnlyList<CompatFindingJson> Notes,
    Vfio.Compat.MigrationProfile Source, Vfio.Compat.MigrationProfile Destination);

/// <summary>One reason or note of <see cref="CompatJson"/>.</summary>
internal sealed record CompatFindingJson(string Code, string Message);

/// <summary><c>vfio-mig report --json</c> (docs/cli/report.md).</summary>
internal sealed record ReportJson(bool Ok, string? MigrationId, string Outcome, IReadOnlyList<ReportRecordJson> Records, double ClockCorrectionMs,
    IReadOnlyList<ReportSideJson> Sides, ReportSwitchoverJson? Switchover, double? DowntimeMs, IReadOnlyList<ReportFaultJson> Faults,
    IReadOnlyList<ReportRecoveryJson> Recovery, IReadOnlyList<ReportWireJson> Wire, string? Svg)
{
    public static ReportJson From(Report.FlightTimeline t, string? svg)
    {
        static double R(double v) => Math.Round(v, 3);
        var sides = t.SidesPresent.Select(side =>
        {
            var events = t.Events.Where(e => e.E.Side == side).ToList();
            var phases = t.Lanes.First(l => l.Side == side && l.Device is null).Spans.Select(s => new ReportPhaseJson(s.Kind, R(s.Start), R(s.End - s.Start))).ToList();
            string outcome = t.Of("outcome", side).LastOrDefault()?.E.Outcome ?? (t.Of("fault", side).Any() ? "failed" : "unfinished");
            long data = events.Where(e => e.E is { Ev: "frames" } && (side == "source" ? e.E.Dir == "out" : e.E.Dir == "in")).Sum(e => e.E.Bytes ?? 0);
            return new ReportSideJson(side, outcome, R(events.Max(Report.FlightTimeline.EndOf) - events.Min(e => e.T)), phases,
                events.Count(e => e.E.Ev == "round"), data, events.Count(e => e.E.Ev == "arc"), events.Count(e => e.E is { Ev: "arc", Errno: not null }),
                t.Of("statistics", side).LastOrDefault()?.E.DowntimeMs);
        }).ToList();
        var sw = t.Of("switchover", "source").FirstOrDefault()?.E;
        string overall = sides.Count == 0 ? "empty"
            : sides.Any(s => s.Outcome == "held") ? "held"
            : sides.All(s => s.Outcome == "completed") ? "completed"
            : sides.Any(s => s.Outcome is "aborted" or "failed") ? "failed" : "unfinished";
        var records = t.Files.Zip(t.Headers, (f, h) => new ReportRecordJson(f, h.Host ?? "", h.Pid ?? 0, h.Wall ?? "")).ToList();
        return new ReportJson(true, t.MigrationId, overall, records, R(t.ClockCorrectionMs), sides,
            sw is null ? null : new ReportSwitchoverJson(sw.Round ?? 0, sw.PendingBytes ?? 0, sw.ThresholdBytes ?? 0, sw.BandwidthBps ?? 0, sw.PredictedDowntimeMs, sw.FixedCostMs, sw.LimitMs ?? 0, sw.Forced == true),
            t.DowntimeStart is { } a && t.DowntimeEnd is { } b ? R(b - a) : null,
            [.. t.Of("fault").Select(f => new ReportFaultJson(R(f.T), f.E.Side ?? "", f.E.Phase, f.E.Errno ?? "", f.E.Detail ?? "", f.E.Dev))],
            [.. t.Of("recovery").Select(f => new ReportRecoveryJson(R(f.T), f.E.Side ?? "", f.E.Name ?? "", f.E.Detail ?? ""))],
            [.. t.Of("wire").Select(w => new ReportWireJson(w.E.Side ?? "", w.E.Dir ?? "", w.E.Name ?? "", w.E.Count ?? 0, w.E.Bytes ?? 0))],
            svg);
    }
}

internal sealed record ReportRecordJson(string File, string Host, int Pid, string Wall);

internal sealed record ReportPhaseJson(string Phase, double StartMs, double DurationMs);

internal sealed record ReportSideJson(string Side, string Outcome, double TotalMs, IReadOnlyList<ReportPhaseJson> Phases, int Rounds, long DataBytes, int Sets, int FailedSets, double? EngineDowntimeMs);

internal sealed record ReportSwitchoverJson(int Round, long PendingBytes, long ThresholdBytes, double BandwidthBps, double? PredictedDowntimeMs, double? FixedCostMs, double LimitMs, bool Forced);

internal sealed record ReportFaultJson(double TMs, string Side, string? Phase, string Errno, string Detail, int? Device);

internal sealed record ReportRecoveryJson(double TMs, string Side, string Action, string Detail);

internal sealed record ReportWireJson(string Side, string Dir, string Type, long Frames, long Bytes);
