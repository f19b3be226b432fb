using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace Vfio.Cli;

/// <summary>
/// Where a command's progress goes and how it looks, the same for every command: standard output, or standard
/// error under <c>--json</c> (stdout then holds only the JSON document); a Spectre.Console live display when that
/// stream is a terminal, plain lines when it is not. Long silent phases (filling devices, hashing, connecting,
/// bench runs) go through <see cref="StepAsync{T}"/>, migrations through <see cref="Migration"/>.
/// </summary>
internal sealed class CliProgress
{
    private static readonly TimeSpan QuietInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StillInterval = TimeSpan.FromSeconds(10);

    private CliProgress(TextWriter writer, bool live, IAnsiConsole? console)
    {
        Out = writer;
        Live = live;
        Console = console;
    }

    /// <summary>Where information lines go.</summary>
    public TextWriter Out { get; }

    /// <summary>True for the Spectre live display (the stream is a terminal).</summary>
    public bool Live { get; }

    /// <summary>The Spectre console on <see cref="Out"/>, when <see cref="Live"/>.</summary>
    public IAnsiConsole? Console { get; }

    /// <summary>Progress for a command: on stderr under <paramref name="json"/>, else on stdout.</summary>
    public static CliProgress For(bool json)
    {
        var writer = json ? System.Console.Error : System.Console.Out;
        bool redirected = json ? System.Console.IsErrorRedirected : System.Console.IsOutputRedirected;
        if (redirected || Environment.GetEnvironmentVariable("TERM") is null or "dumb")
            return new CliProgress(writer, live: false, console: null);
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer) });
        return new CliProgress(writer, console.Profile.Capabilities.Interactive, console);
    }

    /// <summary>Plain lines on <paramref name="writer"/> (tests, and callers that print elsewhere).</summary>
    public static CliProgress Plain(TextWriter writer) => new(writer, live: false, console: null);

    /// <summary>Writes one information line.</summary>
    public void Line(string text)
    {
        lock (Out)
            Out.WriteLine(text);
    }

    /// <summary>
    /// Runs a phase that reports nothing by itself. One that ends within a second passes silently; a longer one
    /// shows a spinner on a terminal, otherwise a line when it passes one second, a "still …" line every 10 s,
    /// and then a line with its duration.
    /// </summary>
    public async Task<T> StepAsync<T>(string what, Func<Task<T>> work)
    {
        var clock = Stopwatch.StartNew();
        var task = work();
        if (await Task.WhenAny(task, Task.Delay(QuietInterval)).ConfigureAwait(false) == task)
            return await task.ConfigureAwait(false);
        if (Live && Console is not null)
        {
            await Console.Status().StartAsync(what + "…", _ => Task.WhenAny(task)).ConfigureAwait(false);
        }
        else
        {
            Line(what + "…");
            while (await Task.WhenAny(task, Task.Delay(StillInterval)).ConfigureAwait(false) != task)
                Line(string.Create(CultureInfo.InvariantCulture, $"still {what} ({clock.Elapsed.TotalSeconds:0} s)"));
        }
        var result = await task.ConfigureAwait(false);
        Line(string.Create(CultureInfo.InvariantCulture, $"{what}: done in {clock.Elapsed.TotalSeconds:0.0} s"));
        return result;
    }

    /// <inheritdoc cref="StepAsync{T}(string, Func{Task{T}})"/>
    public Task StepAsync(string what, Func<Task> work)
        => StepAsync(what, async () =>
        {
            await work().ConfigureAwait(false);
            return true;
        });

    /// <summary>The view of a migration: <paramref name="estimatedBytes"/> (0 = unknown) makes round 1's pending bytes live.</summary>
    public MigrationProgressView Migration(TimeSpan downtimeLimit, long estimatedBytes = 0)
        => new(this, downtimeLimit, estimatedBytes);
}
