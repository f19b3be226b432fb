using System.CommandLine;
using System.Globalization;
using Vfio.Diagnostics;
using Vfio.Net;
using Vfio.Records;

namespace Vfio.Cli;

/// <summary>
/// The CLI side of the flight recorder (docs/flight-recorder.md): <c>--record FILE</c> on the migrating commands, and
/// after a failure the record's path as a hint line — the <c>--record</c> file, or else the in-memory ring saved in
/// the state directory as <c>flight/ID.COMMAND.jsonl</c>.
/// </summary>
internal static class FlightRecords
{
    public static Option<string?> RecordOption() => new("--record")
    {
        HelpName = "FILE",
        Description = "Stream the flight record to FILE (JSON Lines: every SET, data session, round, switchover decision, frame run, fault and recovery; docs/flight-recorder.md). Without it a failed migration's record is saved in the state directory",
    };

    /// <summary>A recorder streaming to <paramref name="path"/>, or memory only when null.</summary>
    public static FlightRecorder Open(string? path) => path is null ? new FlightRecorder() : FlightRecorder.ToFile(path);

    /// <summary>Adds one <c>wire</c> event per direction and frame type the host-to-host session moved.</summary>
    public static void RecordWire(FlightRecorder recorder, string side, NetSession session)
    {
        foreach (var (sent, type, frames, bytes) in session.WireTally())
            recorder.Add(new FlightEvent { Ev = "wire", Side = side, Dir = sent ? "out" : "in", Name = type, Count = frames, Bytes = bytes });
    }

    /// <summary>The hint line that says where the failed migration's record is (saving the ring first when needed).</summary>
    public static string Hint(FlightRecorder recorder, string command, Guid? id, string? stateDir)
    {
        string path;
        if (recorder.Path is { } streamed && recorder.SinkError is null)
        {
            recorder.Flush();
            path = streamed;
        }
        else
        {
            string directory = Path.Combine(stateDir ?? FileMigrationStore.DefaultDirectory(), "flight");
            string name = id is { } g && g != Guid.Empty ? g.ToString("D") : DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
            path = Path.Combine(directory, $"{name}.{command}.jsonl");
            try
            {
                if (OperatingSystem.IsWindows())
                    Directory.CreateDirectory(directory);
                else
                    Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                recorder.Save(path);
            }
            catch (Exception e) when (e is VfioException or IOException or UnauthorizedAccessException)
            {
                return $"the flight record could not be saved: {e.Message}";
            }
        }
        return $"flight record: {path} (vfio-mig report {Quote(path)} --svg timeline.svg draws it)";
    }

    /// <summary>
    /// Appends one <c>recovery</c> event per side, naming the decision and what was done, to the records of migration
    /// <paramref name="id"/> saved in <paramref name="stateDirectory"/> (<c>flight/ID.*.jsonl</c>); returns how many
    /// records were extended. A record that cannot be extended is skipped: resolving matters more than recording.
    /// </summary>
    public static int AppendResolution(string stateDirectory, Guid id, string decision, IEnumerable<(string Side, string Device, string Action)> devices)
    {
        string directory = Path.Combine(stateDirectory, "flight");
        if (!Directory.Exists(directory))
            return 0;
        int extended = 0;
        foreach (var path in Directory.GetFiles(directory, $"{id:D}.*.jsonl"))
        {
            try
            {
                foreach (var side in devices.GroupBy(d => d.Side))
                    FlightRecorder.Append(path, new FlightEvent { Ev = "recovery", Side = side.Key, Name = "resolve", Outcome = decision, Detail = string.Join("; ", side.Select(d => $"{d.Device}: {d.Action}")) });
                extended++;
            }
            catch (VfioException)
            {
            }
        }
        return extended;
    }

    private static string Quote(string path) => path.Contains(' ', StringComparison.Ordinal) ? $"'{path}'" : path;
}
