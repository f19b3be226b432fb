using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Vfio.Engine;

namespace Vfio.Records;

/// <summary>
/// The migration records as files in a state directory (docs/commit-protocol.md, "Records"): <c>ID.source.json</c>
/// and <c>ID.destination.json</c> are replaced atomically (temp file, fsync, rename, fsync of the directory);
/// <c>ID.decision.json</c> is write-once (temp file, fsync, link(2) — which never replaces an existing name —
/// fsync of the directory), so of two callers deciding at once exactly one wins and both learn which.
/// </summary>
public sealed class FileMigrationStore : IMigrationDecisionStore
{
    private const int MaxRecordBytes = 64 << 10;

    /// <summary>Uses (and creates, mode 0700) <paramref name="directory"/>.</summary>
    public FileMigrationStore(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = Path.GetFullPath(directory);
    }

    /// <summary>The state directory.</summary>
    public string Directory { get; }

    /// <summary>
    /// The default state directory: <c>/var/lib/vfio-mig</c> as root, else <c>$XDG_STATE_HOME/vfio-mig</c>, else
    /// <c>~/.local/state/vfio-mig</c>.
    /// </summary>
    public static string DefaultDirectory()
    {
        if (Environment.IsPrivilegedProcess)
            return "/var/lib/vfio-mig";
        string? xdg = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg))
            return Path.Combine(xdg, "vfio-mig");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state", "vfio-mig");
    }

    /// <inheritdoc/>
    public ValueTask WriteRecordAsync(MigrationRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        var file = new RecordFile
        {
            MigrationId = record.Id.ToString("D"),
            Side = SideName(record.Side),
            Devices = [.. record.Devices],
            Status = record.Status.ToString().ToLowerInvariant(),
            Detail = record.Detail,
            UpdatedUtc = record.UpdatedUtc.ToString("O", CultureInfo.InvariantCulture),
        };
        Io("write migration record", () =>
        {
            string temp = WriteTemp(JsonSerializer.SerializeToUtf8Bytes(file, RecordJsonContext.Default.RecordFile));
            File.Move(temp, RecordPath(record.Id, record.Side), overwrite: true);
            Interop.Interop.FSyncDirectory(Directory);
            return true;
        });
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<MigrationRecord?> ReadRecordAsync(Guid id, MigrationSide side, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(ReadRecord(RecordPath(id, side)));

    /// <inheritdoc/>
    public ValueTask<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken cancellationToken = default)
    {
        var list = new List<MigrationRecord>();
        if (!System.IO.Directory.Exists(Directory))
            return ValueTask.FromResult<IReadOnlyList<MigrationRecord>>(list);
        foreach (var path in Io("list migration records", () => System.IO.Directory.GetFiles(Directory, "*.json")))
        {
            string name = Path.GetFileName(path);
            if (!name.EndsWith(".source.json", StringComparison.Ordinal) && !name.EndsWith(".destination.json", StringComparison.Ordinal))
                continue;
            try
            {
                if (ReadRecord(path) is { } r)
                    list.Add(r);
            }
            catch (VfioException)
            {
                // A file that is not a record (it was not written by this store) is no migration to list.
            }
        }
        list.Sort((a, b) => a.UpdatedUtc.CompareTo(b.UpdatedUtc));
        return ValueTask.FromResult<IReadOnlyList<MigrationRecord>>(list);
    }

    /// <inheritdoc/>
    public ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        var file = new DecisionFile
        {
            MigrationId = decision.Id.ToString("D"),
            Decision = decision.Decision.ToString().ToLowerInvariant(),
            DecidedBy = decision.DecidedBy,
            Reason = decision.Reason,
            DecidedUtc = decision.DecidedUtc.ToString("O", CultureInfo.InvariantCulture),
        };
        string final = DecisionPath(decision.Id);
        bool won = Io("record migration decision", () =>
        {
            string temp = WriteTemp(JsonSerializer.SerializeToUtf8Bytes(file, RecordJsonContext.Default.DecisionFile));
            try
            {
                if (Interop.Interop.Link(temp, final) < 0)
                {
                    var errno = Interop.Interop.LastErrno;
                    if (errno == Errno.EEXIST)
                        return false;
                    throw Interop.Interop.ErrnoException(errno, $"link {final}");
                }
            }
            finally
            {
                File.Delete(temp);
            }
            Interop.Interop.FSyncDirectory(Directory);
            return true;
        });
        if (won)
            return ValueTask.FromResult(decision);
        return ValueTask.FromResult(ReadDecision(final) ?? throw new VfioException(Errno.EIO, "record migration decision", $"{final} exists but cannot be read"));
    }

    /// <inheritdoc/>
    public ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(ReadDecision(DecisionPath(id)));

    private string RecordPath(Guid id, MigrationSide side) => Path.Combine(Directory, $"{id:D}.{SideName(side)}.json");

    private string DecisionPath(Guid id) => Path.Combine(Directory, $"{id:D}.decision.json");

    private static string SideName(MigrationSide side) => side == MigrationSide.Source ? "source" : "destination";

    private string WriteTemp(byte[] bytes)
    {
        if (!OperatingSystem.IsLinux())
            throw new VfioException(Errno.EOPNOTSUPP, "write migration record", "migration records are kept on Linux only");
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string temp = Path.Combine(Directory, $".tmp-{Guid.NewGuid():N}");
        using (var stream = new FileStream(temp, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        return temp;
    }

    private static MigrationRecord? ReadRecord(string path)
    {
        var bytes = ReadBounded(path);
        if (bytes is null)
            return null;
        RecordFile? f = Parse(bytes, path, RecordJsonContext.Default.RecordFile);
        if (f is null || !Guid.TryParse(f.MigrationId, out var id) || f.Side is not ("source" or "destination")
            || !Enum.TryParse<MigrationRecordStatus>(f.Status, ignoreCase: true, out var status)
            || !DateTimeOffset.TryParse(f.UpdatedUtc, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var updated))
            throw new VfioException(Errno.EBADMSG, "read migration record", $"{path} is not a migration record");
        return new MigrationRecord(id, f.Side == "source" ? MigrationSide.Source : MigrationSide.Destination, f.Devices ?? [], status, f.Detail ?? "", updated);
    }

    private static MigrationDecisionRecord? ReadDecision(string path)
    {
        var bytes = ReadBounded(path);
        if (bytes is null)
            return null;
        DecisionFile? f = Parse(bytes, path, RecordJsonContext.Default.DecisionFile);
        if (f is null || !Guid.TryParse(f.MigrationId, out var id)
            || !Enum.TryParse<MigrationDecision>(f.Decision, ignoreCase: true, out var decision) || !Enum.IsDefined(decision)
            || !DateTimeOffset.TryParse(f.DecidedUtc, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var decided))
            throw new VfioException(Errno.EBADMSG, "read migration decision", $"{path} is not a migration decision");
        return new MigrationDecisionRecord(id, decision, f.DecidedBy ?? "", f.Reason ?? "", decided);
    }

    private static T? Parse<T>(byte[] bytes, string path, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info)
    {
        try
        {
            return JsonSerializer.Deserialize(bytes, info);
        }
        catch (JsonException e)
        {
            throw new VfioException(Errno.EBADMSG, "read migration record", $"{path} is not valid JSON: {e.Message}", e);
        }
    }

    private static byte[]? ReadBounded(string path)
        => Io($"read {path}", () =>
        {
            if (!File.Exists(path))
                return null;
            using var stream = File.OpenRead(path);
            if (stream.Length > MaxRecordBytes)
                throw new VfioException(Errno.EMSGSIZE, $"read {path}", $"{stream.Length} bytes; a record has at most {MaxRecordBytes}");
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return bytes;
        });

    // File-system failures become the one exception type, with the errno the runtime saw where it says one.
    private static T Io<T>(string operation, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (UnauthorizedAccessException e)
        {
            throw new VfioException(Errno.EACCES, operation, e.Message, e);
        }
        catch (IOException e)
        {
            throw new VfioException(Errno.EIO, operation, e.Message, e);
        }
    }
}

internal sealed class RecordFile
{
    public string MigrationId { get; set; } = "";

    public string Side { get; set; } = "";

    public string[]? Devices { get; set; }

    public string Status { get; set; } = "";

    public string? Detail { get; set; }

    public string UpdatedUtc { get; set; } = "";
}

internal sealed class DecisionFile
{
    public string MigrationId { get; set; } = "";

    public string Decision { get; set; } = "";

    public string? DecidedBy { get; set; }

    public string? Reason { get; set; }

    public string DecidedUtc { get; set; } = "";
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(RecordFile))]
[JsonSerializable(typeof(DecisionFile))]
internal sealed partial class RecordJsonContext : JsonSerializerContext;
