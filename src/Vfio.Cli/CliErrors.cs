using System.Globalization;
using System.Net.Sockets;
using Vfio.Engine;

namespace Vfio.Cli;

/// <summary>
/// The one place that turns a failure into what the user sees: one line
/// <c>vfio-mig CMD: error: ERRNO: plain words</c> on standard error, optional <c>  hint: …</c> lines, and an
/// exit code from <see cref="ExitCodes"/> (docs/cli/conventions.md). No input ever produces a stack trace here;
/// <c>VFIO_MIG_DEBUG=1</c> adds the exception's full text for a developer.
/// </summary>
internal static class CliErrors
{
    /// <summary>Prints <paramref name="failure"/> for <paramref name="command"/> (e.g. <c>bench tcp</c>) and returns its exit code.</summary>
    public static int Report(string command, Exception failure, TextWriter stderr)
    {
        var (_, line) = Describe(failure);
        stderr.WriteLine($"{Prefix(command)}: error: {line}");
        foreach (var hint in HintsOf(failure))
            stderr.WriteLine("  hint: " + OneLine(hint));
        if (Environment.GetEnvironmentVariable("VFIO_MIG_DEBUG") == "1")
            stderr.WriteLine(failure.ToString());
        stderr.Flush();
        return ExitCodeOf(failure);
    }

    /// <summary>Prints a parse error (exit 2) with a pointer to the command's help.</summary>
    public static int ReportUsage(string command, string message, TextWriter stderr)
    {
        stderr.WriteLine($"{Prefix(command)}: error: {(StartsWithErrno(message) ? "" : "EINVAL: ")}{OneLine(message)}");
        stderr.WriteLine($"  hint: {Prefix(command)} --help shows the options and examples");
        stderr.Flush();
        return ExitCodes.Usage;
    }

    /// <summary>The exit code for <paramref name="failure"/>.</summary>
    public static int ExitCodeOf(Exception failure) => failure switch
    {
        CliException c => c.ExitCode,
        ArgumentException => ExitCodes.Usage, // a library refused a value the user gave
        _ => ExitCodes.Failed,
    };

    /// <summary>The errno and the line after <c>error: </c>, errno first.</summary>
    public static (Errno Errno, string Line) Describe(Exception failure)
    {
        switch (failure)
        {
            case MigrationException m:
                // The engine's message names the phase first; the CLI's line starts with the errno.
                string where = m.Side == MigrationSide.Source ? "source" : "destination";
                string device = m.DeviceIndex >= 0
                    ? string.Create(CultureInfo.InvariantCulture, $" device {m.DeviceIndex}{(m.DeviceName is null ? "" : " (" + m.DeviceName + ")")}")
                    : "";
                return (m.Errno, OneLine($"{VfioException.NameOf(m.Errno)}: migration failed in {MigrationException.PhaseName(m.Phase)} on the {where}{device}: {m.Detail}"));
            case VfioException v:
                return (v.Errno, OneLine(v.Message));
            case OperationCanceledException:
                return (Errno.ECANCELED, "ECANCELED: interrupted");
            case SocketException s:
                var errno = (Errno)s.ErrorCode is var e && Enum.IsDefined(e) ? e : Errno.EIO;
                return (errno, OneLine($"{VfioException.NameOf(errno)}: {s.Message}"));
            case FileNotFoundException or DirectoryNotFoundException:
                return (Errno.ENOENT, OneLine("ENOENT: " + failure.Message));
            case UnauthorizedAccessException:
                return (Errno.EACCES, OneLine("EACCES: " + failure.Message));
            case ArgumentException a:
                // Keep the sentence, drop the "(Parameter 'x')" and "Actual value was" tails.
                string words = a.Message.Split('\n')[0];
                int tail = words.IndexOf(" (Parameter '", StringComparison.Ordinal);
                return (Errno.EINVAL, OneLine("EINVAL: " + (tail > 0 ? words[..tail] : words)));
            case OutOfMemoryException:
                return (Errno.ENOMEM, "ENOMEM: not enough memory for this size");
            case IOException io:
                return (Errno.EIO, OneLine("EIO: " + io.Message));
            default:
                return (Errno.EIO, OneLine($"EIO: internal error ({failure.GetType().Name}): {failure.Message}"));
        }
    }

    /// <summary>Hint lines for <paramref name="failure"/>: its own, then advice for common errnos.</summary>
    public static IReadOnlyList<string> HintsOf(Exception failure)
    {
        if (failure is CliException c)
            return c.Hints;
        var hints = new List<string>();
        if (failure is MigrationException m)
        {
            foreach (var r in m.RecoveryErrors)
                hints.Add("recovery: " + r);
            if (m.Convergence is not null)
                hints.Add("--force-switchover switches over anyway (the downtime then exceeds the limit)");
        }
        else if (failure is not VfioException and not OperationCanceledException and not ArgumentException)
        {
            hints.Add("this is a defect of vfio-mig; VFIO_MIG_DEBUG=1 prints the details for a report");
        }
        return hints;
    }

    private static string Prefix(string command) => command.Length == 0 ? "vfio-mig" : "vfio-mig " + command;

    private static bool StartsWithErrno(string message)
        => message.Length > 2 && message[0] == 'E' && message.IndexOf(':', StringComparison.Ordinal) is > 1 and var colon
            && message[1..colon].All(char.IsAsciiLetterUpper);

    private static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();
}
