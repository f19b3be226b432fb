using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Vfio.Engine;
using Vfio.Interop;

namespace Vfio.Records;

/// <summary>
/// The migration records as files in a state directory (docs/commit-protocol.md, "Records"): <c>ID.source.json</c>
/// and <c>ID.destination.json</c> are replaced atomically (temp file, fsync, rename, fsync of the directory);
/// <c>ID.decision.json</c> is write-once: written and fsynced ahead as an unnamed file (O_TMPFILE), then published
/// by linkat(2) — which never replaces an existing name — and an fsync of the directory, so of two callers deciding
/// at once exactly one wins and both learn which. The decision's time is when its file got its name (the file's
/// change time, set by the link).
/// </summary>
public sealed class FileMigrationStore : IMigrationDecisionStore
{
    private const int MaxRecordBytes = 64 << 10;

    // A named temp file lives for the milliseconds between its write and its rename or link; one this old was left
    // by a crash.
    private static readonly TimeSpan StaleTempAge = TimeSpan.FromHours(1);
    private bool _swept;

    /// <summary>Uses (and creates, mode 0700) <paramref name="directory"/>.</summary>
    public FileMigrationStore(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = Path.GetFullPath(directory);
    }

    /// <summary>The state directory.</summary>
    public string Directory { get; }

    /// <summary>
    /// Whether decisions are written ahead as unnamed files (O_TMPFILE). Turned off when the file system refuses one;
    /// then a prepared decision holds nothing ahead and publishing writes a named temp file and links it.
    /// </summary>
    internal bool UnnamedFiles { get; set; } = true;

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
    public async ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
    {
        var prepared = await PrepareDecisionAsync(decision, cancellationToken).ConfigureAwait(false);
        await using (prepared.ConfigureAwait(false))
            return await prepared.PublishAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The decision is written and fsynced into an unnamed file in the state directory (it has no name, so a crash
    /// before it is published leaves nothing); publishing links it as <c>ID.decision.json</c> and fsyncs the directory.
    /// </remarks>
    public ValueTask<IPreparedDecision> PrepareDecisionAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        var file = UnnamedFiles ? Io("prepare migration decision", () => WriteUnnamed(SerializeDecision(decision))) : null;
        return ValueTask.FromResult<IPreparedDecision>(file is null
            ? new DeferredDecision(decision, (d, _) => ValueTask.FromResult(DecideThroughNamedTemp(d)))
            : new PreparedDecisionFile(this, decision, file));
    }

    /// <inheritdoc/>
    public ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(ReadDecision(DecisionPath(id)));

    /// <summary>Links the prepared <paramref name="file"/> as the decision unless one exists; returns the decision on record.</summary>
    internal MigrationDecisionRecord Publish(MigrationDecisionRecord decision, SafeFdHandle file)
    {
        string final = DecisionPath(decision.Id);
        return Io("record migration decision", () =>
        {
            if (Interop.Interop.LinkAt(Interop.Interop.AT_FDCWD, $"/proc/self/fd/{file.Fd}", Interop.Interop.AT_FDCWD, final, Interop.Interop.AT_SYMLINK_FOLLOW) < 0)
            {
                var errno = Interop.Interop.LastErrno;
                if (errno != Errno.EEXIST)
                    throw Interop.Interop.ErrnoException(errno, $"link {final}");
                return DecisionOnRecord(final);
            }
            var published = decision with { DecidedUtc = Interop.Interop.ChangeTime(file, $"fstat {final}") };
            Interop.Interop.FSyncDirectory(Directory);
            return published;
        });
    }

    // Where unnamed files are refused: the whole decision at once, through a named temp file.
    private MigrationDecisionRecord DecideThroughNamedTemp(MigrationDecisionRecord decision)
    {
        string final = DecisionPath(decision.Id);
        return Io("record migration decision", () =>
        {
            string temp = WriteTemp(SerializeDecision(decision));
            try
            {
                if (Interop.Interop.Link(temp, final) < 0 && Interop.Interop.LastErrno is var errno && errno != Errno.EEXIST)
                    throw Interop.Interop.ErrnoException(errno, $"link {final}");
            }
            finally
            {
                File.Delete(temp);
            }
            // This one or the earlier one: the read makes it durable and gives its time.
            return DecisionOnRecord(final);
        });
    }

    private MigrationDecisionRecord DecisionOnRecord(string final)
        => ReadDecision(final) ?? throw new VfioException(Errno.EIO, "record migration decision", $"{final} exists but cannot be read");

    private static byte[] SerializeDecision(MigrationDecisionRecord decision)
        => JsonSerializer.SerializeToUtf8Bytes(new DecisionFile
        {
            MigrationId = decision.Id.ToString("D"),
            Decision = decision.Decision.ToString().ToLowerInvariant(),
            DecidedBy = decision.DecidedBy,
            Reason = decision.Reason,
            PreparedUtc = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        }, RecordJsonContext.Default.DecisionFile);

    private string RecordPath(Guid id, MigrationSide side) => Path.Combine(Directory, $"{id:D}.{SideName(side)}.json");

    private string DecisionPath(Guid id) => Path.Combine(Directory, $"{id:D}.decision.json");

    private static string SideName(MigrationSide side) => side == MigrationSide.Source ? "source" : "destination";

    // Creates the directory; the first time per store, removes temp files a crash left behind (they were never
    // renamed or linked, so they hold no record and no decision; reads ignore them anyway).
    private void EnsureDirectory()
    {
        if (!OperatingSystem.IsLinux())
            throw NotOnLinux();
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (_swept)
            return;
        _swept = true;
        var staleBefore = DateTime.UtcNow - StaleTempAge;
        foreach (string temp in System.IO.Directory.GetFiles(Directory, ".tmp-*"))
        {
            try
            {
                if (File.GetLastWriteTimeUtc(temp) < staleBefore)
                    File.Delete(temp);
            }
            catch (IOException)
            {
                // Best effort: a stray temp file is ignored by every read.
            }
        }
    }

    // The decision's bytes in an unnamed file of the state directory, written and fsynced; null where the file
    // system has no unnamed files (or /proc, through which linkat names one).
    private SafeFdHandle? WriteUnnamed(byte[] bytes)
    {
        EnsureDirectory();
        if (!System.IO.Directory.Exists("/proc/self/fd"))
        {
            UnnamedFiles = false;
            return null;
        }
        var file = Interop.Interop.OpenHandle(Directory, Interop.Interop.O_TMPFILE | Interop.Interop.O_WRONLY | Interop.Interop.O_CLOEXEC, (uint)(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        if (file.IsInvalid)
        {
            var errno = Interop.Interop.LastErrno;
            file.Dispose();
            if (errno != Errno.EOPNOTSUPP)
                throw Interop.Interop.ErrnoException(errno, $"open an unnamed file in {Directory}");
            UnnamedFiles = false;
            return null;
        }
        try
        {
            WriteAll(file, bytes);
            Interop.Interop.CheckIo(Interop.Interop.FSync(file.Fd), "fsync the prepared decision");
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static unsafe void WriteAll(SafeFdHandle file, byte[] bytes)
    {
        fixed (byte* start = bytes)
        {
            int done = 0;
            while (done < bytes.Length)
            {
                nint n = Interop.Interop.Write(file, start + done, (nuint)(bytes.Length - done));
                if (n < 0 && Interop.Interop.LastErrno == Errno.EINTR)
                    continue;
                done += (int)Interop.Interop.CheckIo(n, "write the prepared decision");
            }
        }
    }

    private static VfioException NotOnLinux() => new(Errno.EOPNOTSUPP, "write migration record", "migration records are kept on Linux only");

    private string WriteTemp(byte[] bytes)
    {
        if (!OperatingSystem.IsLinux())
            throw NotOnLinux();
        EnsureDirectory();
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

    // A decision found is made durable before it is returned: one whose writer crashed between its link and its
    // directory fsync must not be acted on here and then lost with the power.
    private MigrationDecisionRecord? ReadDecision(string path)
        => Io($"read {path}", () =>
        {
            if (!File.Exists(path))
                return null;
            using var stream = File.OpenRead(path);
            Interop.Interop.FSyncDirectory(Directory);
            var bytes = ReadAll(stream, path);
            DecisionFile? f = Parse(bytes, path, RecordJsonContext.Default.DecisionFile);
            if (f is null || !Guid.TryParse(f.MigrationId, out var id)
                || !Enum.TryParse<MigrationDecision>(f.Decision, ignoreCase: true, out var decision) || !Enum.IsDefined(decision)
                || (f.DecidedUtc is null ? !DateTimeOffset.TryParse(f.PreparedUtc, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out _)
                    : !DateTimeOffset.TryParse(f.DecidedUtc, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out _)))
                throw new VfioException(Errno.EBADMSG, "read migration decision", $"{path} is not a migration decision");
            // A file written ahead was published when it got its name; older files carry decided_utc.
            var decided = f.DecidedUtc is null
                ? Interop.Interop.ChangeTime(stream.SafeFileHandle, $"fstat {path}")
                : DateTimeOffset.Parse(f.DecidedUtc, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
            return new MigrationDecisionRecord(id, decision, f.DecidedBy ?? "", f.Reason ?? "", decided);
        });

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
            return ReadAll(stream, path);
        });

    private static byte[] ReadAll(FileStream stream, string path)
    {
        if (stream.Length > MaxRecordBytes)
            throw new VfioException(Errno.EMSGSIZE, $"read {path}", $"{stream.Length} bytes; a record has at most {MaxRecordBytes}");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    // File-system failures become the one exception type, with the errno the runtime saw where it says one.
    private static T Io<T>(string operation, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (VfioException)
        {
            throw;
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

    // Written by older builds only: the decision's time is now the file's change time (docs/commit-protocol.md).
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? DecidedUtc { get; set; }

    // When the decision was written ahead (the file's content); it was decided when the file got its name.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PreparedUtc { get; set; }
}

/// <summary>
/// A decision written ahead as an unnamed file: <see cref="PublishAsync"/> links it (<see cref="FileMigrationStore.Publish"/>);
/// disposing it unpublished closes the file, and the kernel frees it.
/// </summary>
internal sealed class PreparedDecisionFile(FileMigrationStore store, MigrationDecisionRecord decision, SafeFdHandle file) : IPreparedDecision
{
    private MigrationDecisionRecord? _published;

    public MigrationDecisionRecord Decision => decision;

    public ValueTask<MigrationDecisionRecord> PublishAsync(CancellationToken cancellationToken = default)
    {
        if (_published is null)
        {
            ObjectDisposedException.ThrowIf(file.IsClosed, this);
            _published = store.Publish(decision, file);
        }
        return ValueTask.FromResult(_published);
    }

    public ValueTask DisposeAsync()
    {
        file.Dispose();
        return ValueTask.CompletedTask;
    }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(RecordFile))]
[JsonSerializable(typeof(DecisionFile))]
internal sealed partial class RecordJsonContext : JsonSerializerContext;
