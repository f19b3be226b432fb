using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Vfio.Diagnostics;

/// <summary>
/// The flight recorder: a timeline of what the migration engine did on one host (both halves when they run in
/// one process), as JSON Lines (docs/flight-recorder.md). Memory is bounded: the last <see cref="Capacity"/>
/// events stay in a ring; with a file sink every event is also streamed to the file as it happens. The first
/// line is the <c>recorder</c> event carrying the wall-clock anchor; all other times are monotonic offsets from it.
/// Thread-safe. Recording never throws into the engine: a sink that fails is dropped and named in
/// <see cref="SinkError"/>.
/// </summary>
public sealed class FlightRecorder : IDisposable
{
    /// <summary>The schema version written on the recorder line.</summary>
    public const int SchemaVersion = 1;

    /// <summary>The largest flight record <see cref="Load"/> reads.</summary>
    public const long MaxRecordBytes = 1L << 30;

    /// <summary>The default ring size (events).</summary>
    public const int DefaultCapacity = 16384;

    private readonly Lock _lock = new();
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly FlightEvent[] _ring;
    private readonly FlightEvent _header;
    private long _added;
    private StreamWriter? _sink;

    /// <summary>A recorder that keeps the last <paramref name="capacity"/> events in memory (see <see cref="Save"/>).</summary>
    public FlightRecorder(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 16);
        _ring = new FlightEvent[capacity];
        _header = new FlightEvent
        {
            Ev = "recorder",
            Schema = SchemaVersion,
            Wall = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture),
            Host = Environment.MachineName,
            Pid = Environment.ProcessId,
        };
    }

    /// <summary>
    /// A recorder that also streams every event to <paramref name="path"/> (created or truncated, mode 0600).
    /// </summary>
    /// <exception cref="VfioException">The file cannot be created.</exception>
    public static FlightRecorder ToFile(string path, int capacity = DefaultCapacity)
    {
        ArgumentNullException.ThrowIfNull(path);
        var recorder = new FlightRecorder(capacity);
        try
        {
            recorder._sink = CreatePrivate(path);
            recorder.Path = System.IO.Path.GetFullPath(path);
            WriteLine(recorder._sink, recorder._header);
            recorder._sink.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VfioException(e is UnauthorizedAccessException ? Errno.EACCES : Errno.EIO, "create flight record", $"{path}: {e.Message}", e);
        }
        return recorder;
    }

    /// <summary>The file the events stream to, or null.</summary>
    public string? Path { get; private set; }

    /// <summary>Events kept in memory at most.</summary>
    public int Capacity => _ring.Length;

    /// <summary>Events recorded so far (including those the ring no longer holds).</summary>
    public long Count => Interlocked.Read(ref _added);

    /// <summary>Why the file sink stopped, or null.</summary>
    public string? SinkError { get; private set; }

    /// <summary>The recorder line: wall-clock anchor, schema, host and process.</summary>
    public FlightEvent Header => _header;

    /// <summary>Milliseconds since the recorder started (the clock of <see cref="FlightEvent.TMs"/>).</summary>
    public double NowMs => Stopwatch.GetElapsedTime(_start).TotalMilliseconds;

    /// <summary>Records <paramref name="e"/> stamped with the current time.</summary>
    public void Add(FlightEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        AddStamped(e with { TMs = Math.Round(NowMs, 3) });
    }

    /// <summary>Records <paramref name="e"/> with the time it already carries.</summary>
    public void AddStamped(FlightEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        lock (_lock)
        {
            _ring[_added % _ring.Length] = e;
            _added++;
            if (_sink is { } sink)
            {
                try
                {
                    WriteLine(sink, e);
                    // Failures and outcomes reach the disk at once: they are what a post-mortem needs most.
                    if (e.Ev is "fault" or "outcome" or "recovery")
                        sink.Flush();
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException)
                {
                    SinkError = ex.Message;
                    _sink = null;
                }
            }
        }
    }

    /// <summary>The events the ring holds, oldest first (the recorder line not included).</summary>
    public IReadOnlyList<FlightEvent> Snapshot()
    {
        lock (_lock)
        {
            long n = Math.Min(_added, _ring.Length);
            var list = new FlightEvent[n];
            for (long i = 0; i < n; i++)
                list[i] = _ring[(_added - n + i) % _ring.Length];
            return list;
        }
    }

    /// <summary>
    /// Writes the recorder line and the events the ring holds to <paramref name="path"/> (mode 0600); a note says how
    /// many older events the ring dropped.
    /// </summary>
    /// <exception cref="VfioException">The file cannot be written.</exception>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var events = Snapshot();
        long dropped = Count - events.Count;
        try
        {
            using var writer = CreatePrivate(path);
            WriteLine(writer, _header);
            if (dropped > 0)
                WriteLine(writer, new FlightEvent { TMs = events.Count > 0 ? events[0].TMs : 0, Ev = "note", Count = dropped, Detail = $"the ring kept the last {events.Count} events; {dropped} older ones were dropped" });
            foreach (var e in events)
                WriteLine(writer, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VfioException(e is UnauthorizedAccessException ? Errno.EACCES : Errno.EIO, "write flight record", $"{path}: {e.Message}", e);
        }
    }

    /// <summary>Flushes the file sink.</summary>
    public void Flush()
    {
        lock (_lock)
        {
            try
            {
                _sink?.Flush();
            }
            catch (IOException ex)
            {
                SinkError = ex.Message;
                _sink = null;
            }
        }
    }

    /// <summary>Flushes and closes the file sink.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            try
            {
                _sink?.Dispose();
            }
            catch (IOException ex)
            {
                SinkError = ex.Message;
            }
            _sink = null;
        }
    }

    // A record names devices, hosts and errors: readable by its owner only (mode 0600).
    private static StreamWriter CreatePrivate(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        return new StreamWriter(new FileStream(path, options), new UTF8Encoding(false));
    }

    private static void WriteLine(StreamWriter writer, FlightEvent e)
    {
        writer.Write(JsonSerializer.Serialize(e, FlightRecordJsonContext.Default.FlightEvent));
        writer.Write('\n');
    }

    /// <summary>
    /// Appends <paramref name="e"/> to the record at <paramref name="path"/> written by another process (e.g. what
    /// <c>vfio-mig resolve</c> did later): its <c>t_ms</c> is taken from the wall clock against the record's anchor.
    /// </summary>
    /// <exception cref="VfioException">The record cannot be read or written.</exception>
    public static void Append(string path, FlightEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        string? first;
        try
        {
            using (var reader = new StreamReader(path))
                first = reader.ReadLine();
            var header = first is null ? null : JsonSerializer.Deserialize(first, FlightRecordJsonContext.Default.FlightEvent);
            if (header?.Ev != "recorder" || !DateTimeOffset.TryParse(header.Wall, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var anchor))
                throw new VfioException(Errno.EBADMSG, "append to flight record", $"{path} does not start with a recorder line");
            double ms = Math.Round((DateTimeOffset.UtcNow - anchor).TotalMilliseconds, 3);
            File.AppendAllText(path, JsonSerializer.Serialize(e with { TMs = ms }, FlightRecordJsonContext.Default.FlightEvent) + "\n");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException && ex is not VfioException)
        {
            throw new VfioException(Errno.EIO, "append to flight record", $"{path}: {ex.Message}", ex);
        }
    }

    /// <summary>Reads a flight record: the recorder line and the events, in file order.</summary>
    /// <exception cref="VfioException">ENOENT/EACCES when the file cannot be read, EBADMSG for a line that is not a flight event (with its number).</exception>
    public static (FlightEvent Header, IReadOnlyList<FlightEvent> Events) Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var events = new List<FlightEvent>();
        FlightEvent? header = null;
        int number = 0;
        try
        {
            long size = new FileInfo(path).Length;
            if (size > MaxRecordBytes)
                throw new VfioException(Errno.EFBIG, "read flight record", $"{path} is {size} bytes; flight records above {MaxRecordBytes >> 20} MiB are not read");
            foreach (var line in File.ReadLines(path))
            {
                number++;
                if (line.Length == 0)
                    continue;
                FlightEvent? e;
                try
                {
                    e = JsonSerializer.Deserialize(line, FlightRecordJsonContext.Default.FlightEvent);
                }
                catch (JsonException ex)
                {
                    throw new VfioException(Errno.EBADMSG, "read flight record", $"{path} line {number} is not a flight event ({ex.Message.Split('.')[0]})");
                }
                if (e is null || e.Ev.Length == 0)
                    throw new VfioException(Errno.EBADMSG, "read flight record", $"{path} line {number} has no \"ev\"");
                if (e.Ev == "recorder" && header is null)
                    header = e;
                else
                    events.Add(e);
            }
        }
        catch (FileNotFoundException)
        {
            throw new VfioException(Errno.ENOENT, "read flight record", $"{path}: no such file");
        }
        catch (DirectoryNotFoundException)
        {
            throw new VfioException(Errno.ENOENT, "read flight record", $"{path}: no such file");
        }
        catch (UnauthorizedAccessException)
        {
            throw new VfioException(Errno.EACCES, "read flight record", $"{path}: permission denied");
        }
        catch (IOException ex) when (ex is not VfioException)
        {
            throw new VfioException(Errno.EIO, "read flight record", $"{path}: {ex.Message}");
        }
        if (header is null)
            throw new VfioException(Errno.EBADMSG, "read flight record", $"{path} has no recorder line (the first line of every flight record)");
        if (header.Schema != SchemaVersion)
            throw new VfioException(Errno.EPROTO, "read flight record", $"{path} is schema {header.Schema}; this vfio-mig reads schema {SchemaVersion}");
        return (header, events);
    }
}
