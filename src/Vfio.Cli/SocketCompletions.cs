namespace Vfio.Cli;

/// <summary>
/// Where the runtime runs the continuation of a finished socket operation: on its epoll thread ("inline") instead of
/// handing it to a thread-pool worker. <c>serve</c> and <c>migrate</c> ask for inline completions: there every
/// vfio-user command and reply is such a hand-over, and without it the processes of a migration spend their cores
/// waking workers (docs/performance.md, "Runtime settings"). The runtime reads the setting once, when the first
/// asynchronous socket operation starts, so a command asks before it opens a socket. Inline completions need
/// continuations that never block on another socket (a blocked epoll thread stalls every socket it serves): the
/// vfio-user server and client only await. A value already in the environment is the user's and is kept.
/// </summary>
internal static class SocketCompletions
{
    // The runtime reads only this environment variable (there is no runtimeconfig knob for it).
    internal const string InlineVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Asks for inline completions unless the environment already says either way.</summary>
    public static void PreferInline() => PreferInline(Environment.GetEnvironmentVariable, Environment.SetEnvironmentVariable);

    internal static void PreferInline(Func<string, string?> read, Action<string, string> write)
    {
        if (read(InlineVariable) is null)
            write(InlineVariable, "1");
    }
}
