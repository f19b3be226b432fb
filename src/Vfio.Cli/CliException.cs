namespace Vfio.Cli;

/// <summary>
/// A command's failure that carries its exit code and hint lines for the shared error path
/// (<see cref="CliErrors"/>). A command throws this, or any <see cref="VfioException"/> (exit 1), and the
/// shared handler prints the one line <c>vfio-mig CMD: error: ERRNO: plain words</c> and the hints.
/// </summary>
internal sealed class CliException : VfioException
{
    public CliException(int exitCode, Errno errno, string operation, string detail, IReadOnlyList<string>? hints = null, Exception? inner = null)
        : base(errno, operation, detail, inner)
    {
        ExitCode = exitCode;
        Hints = hints ?? [];
    }

    // A failure already described elsewhere, re-thrown with hints or a different exit code; the line stays the same.
    private CliException(int exitCode, Errno errno, string line, IReadOnlyList<string> hints, Exception inner)
        : base(errno, "", null, line, inner)
    {
        ExitCode = exitCode;
        Hints = hints;
    }

    /// <summary>One of <see cref="ExitCodes"/>.</summary>
    public int ExitCode { get; }

    /// <summary>Lines printed as <c>  hint: …</c> after the error line.</summary>
    public IReadOnlyList<string> Hints { get; }

    /// <summary>The command already printed its own <c>--json</c> document (with <c>ok: false</c>), so the shared
    /// error document is not printed as well: stdout keeps one document.</summary>
    public bool DocumentPrinted { get; init; }

    /// <summary>A usage error (exit 2, EINVAL): bad arguments or input; nothing was done.</summary>
    public static CliException Usage(string operation, string detail, params string[] hints)
        => new(ExitCodes.Usage, Errno.EINVAL, operation, detail, hints);

    /// <summary>
    /// <paramref name="failure"/> as the shared handler would print it, with <paramref name="hints"/> added
    /// after its own (e.g. what state the devices were left in).
    /// </summary>
    public static CliException WithHints(Exception failure, params string[] hints)
    {
        var (errno, line) = CliErrors.Describe(failure);
        return new CliException(CliErrors.ExitCodeOf(failure), errno, line, [.. CliErrors.HintsOf(failure), .. hints], failure);
    }

    /// <summary><paramref name="failure"/> with another exit code (e.g. a verification mismatch, exit 3).</summary>
    public static CliException WithExitCode(Exception failure, int exitCode, params string[] hints)
    {
        var (errno, line) = CliErrors.Describe(failure);
        return new CliException(exitCode, errno, line, [.. CliErrors.HintsOf(failure), .. hints], failure);
    }
}
