using System.CommandLine;
using Microsoft.Extensions.Logging;

namespace Vfio.Cli;

/// <summary>The one way a command turns <c>--verbose</c> into log lines on stderr (stdout stays the command's output).</summary>
internal static class CliLogging
{
    public static Option<bool> Verbose(string what) => new("--verbose") { Description = $"Log {what} to stderr" };

    /// <summary>A console logger factory on stderr when <paramref name="verbose"/>, else one that drops everything.</summary>
    public static ILoggerFactory Create(bool verbose) => LoggerFactory.Create(b =>
    {
        b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        b.SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.None);
    });
}
