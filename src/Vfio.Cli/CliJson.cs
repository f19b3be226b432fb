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

internal sealed record BenchPairJson(long Bytes, double Seconds, double CpuSeconds, double BytesPerSecond, double RawSeconds, double RawCpuSeconds, double RawBytesPerSecond, double Ratio);

/// <summary><c>vfio-mig compat --json</c>: the answer, every reason and note, and both profiles.</summary>
internal sealed record CompatJson(bool Compatible, string From, string To, bool PreCopy, IReadOnlyList<CompatFindingJson> Reasons, IReadOnlyList<CompatFindingJson> Notes,
    Vfio.Compat.MigrationProfile Source, Vfio.Compat.MigrationProfile Destination);

/// <summary>One reason or note of <see cref="CompatJson"/>.</summary>
internal sealed record CompatFindingJson(string Code, string Message);
