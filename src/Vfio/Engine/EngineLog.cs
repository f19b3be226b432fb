using Microsoft.Extensions.Logging;

namespace Vfio.Engine;

// Source-generated log messages of the engine; event ids are stable (100–199; docs/architecture.md lists every
// area's range).
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 100, EventName = "MigrationStarting", Level = LogLevel.Information, Message = "{Side}: migrating {Devices} device(s), pre-copy {PreCopy}, P2P {P2P}")]
    public static partial void Starting(ILogger logger, MigrationSide side, int devices, bool preCopy, bool p2p);

    [LoggerMessage(EventId = 101, EventName = "MigrationPhaseEntered", Level = LogLevel.Debug, Message = "{Side}: entering {Phase}")]
    public static partial void PhaseEntered(ILogger logger, MigrationSide side, MigrationPhase phase);

    [LoggerMessage(EventId = 102, EventName = "MigrationRound", Level = LogLevel.Debug, Message = "pre-copy round {Round}: {Bytes} bytes, pending {Pending}, allowed {Threshold}, bandwidth {Bandwidth:0} B/s, acks {Acks}/{Expected}")]
    public static partial void Round(ILogger logger, int round, long bytes, long pending, long threshold, double bandwidth, int acks, int expected);

    [LoggerMessage(EventId = 103, EventName = "MigrationSwitchover", Level = LogLevel.Information, Message = "switchover after {Rounds} round(s): pending {Pending} bytes, allowed {Threshold}, forced {Forced}")]
    public static partial void Switchover(ILogger logger, int rounds, long pending, long threshold, bool forced);

    [LoggerMessage(EventId = 104, EventName = "MigrationCompleted", Level = LogLevel.Information, Message = "{Side}: migration complete: {Bytes} bytes, downtime {DowntimeMs:0.0} ms, total {TotalMs:0} ms")]
    public static partial void Completed(ILogger logger, MigrationSide side, long bytes, double downtimeMs, double totalMs);

    [LoggerMessage(EventId = 105, EventName = "MigrationFailed", Level = LogLevel.Error, Message = "{Side}: migration failed; recovering the devices")]
    public static partial void Failed(ILogger logger, MigrationSide side, Exception exception);

    [LoggerMessage(EventId = 106, EventName = "MigrationRecoveryProblem", Level = LogLevel.Error, Message = "{Side}: recovery problem: {Problem}")]
    public static partial void RecoveryProblem(ILogger logger, MigrationSide side, string problem);

    [LoggerMessage(EventId = 108, EventName = "MigrationResetBeforeMigration", Level = LogLevel.Warning, Message = "destination device {Index} ({Name}) was in {State}: reset before the migration")]
    public static partial void ResetBeforeMigration(ILogger logger, int index, string name, string state);

    [LoggerMessage(EventId = 109, EventName = "MigrationDecided", Level = LogLevel.Information, Message = "{Side}: migration {Id} decided {Decision}")]
    public static partial void Decided(ILogger logger, MigrationSide side, Guid id, MigrationDecision decision);

    [LoggerMessage(EventId = 110, EventName = "MigrationHeld", Level = LogLevel.Error, Message = "{Side}: migration {Id} held: {Why}")]
    public static partial void Held(ILogger logger, MigrationSide side, Guid id, string why);

    [LoggerMessage(EventId = 107, EventName = "MigrationReturnFrame", Level = LogLevel.Debug, Message = "return path: {Type} frame, device {Device}, {Length} bytes")]
    public static partial void ReturnFrame(ILogger logger, Stream.MigrationFrameType type, ushort device, int length);
}
