namespace Vfio.Cli;

/// <summary>
/// Two settings of the .NET runtime that <c>serve</c> and <c>migrate</c> change, measured in docs/performance.md
/// ("Runtime settings"). A migration between two <c>serve</c> processes runs three busy processes, and with the
/// defaults they spend their cores handing work between threads:
/// <list type="bullet">
/// <item>Idle thread-pool workers block at once instead of spinning and yielding first (a spinning worker takes the
/// core from a process that has work).</item>
/// <item>Socket completions run inline on the runtime's epoll thread instead of waking a worker for each vfio-user
/// message. Inline completions need continuations that never block on another socket (a blocked epoll thread stalls
/// every socket it serves): the vfio-user server and client only await.</item>
/// </list>
/// Other commands keep the defaults: <c>send</c> and <c>receive</c> showed longer downtimes without spinning workers,
/// and inline completions slowed a sender and receiver sharing one process. The runtime reads both settings once,
/// before its first worker or asynchronous socket operation, so they are applied first thing in <c>Main</c>. A value
/// already in the environment is the user's and is kept.
/// </summary>
internal static class RuntimeTuning
{
    // The runtime reads the environment variable first, then this runtimeconfig property.
    internal const string SpinLimitVariable = "DOTNET_ThreadPool_UnfairSemaphoreSpinLimit";
    internal const string SpinLimitProperty = "System.Threading.ThreadPool.UnfairSemaphoreSpinLimit";

    // The runtime reads only this environment variable (there is no runtimeconfig property for it).
    internal const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Applies the settings when <paramref name="args"/> name <c>serve</c> or <c>migrate</c>.</summary>
    public static void Apply(string[] args) =>
        Apply(args, Environment.GetEnvironmentVariable, Environment.SetEnvironmentVariable, AppContext.SetData);

    internal static void Apply(string[] args, Func<string, string?> read, Action<string, string> write, Action<string, object?> setProperty)
    {
        if (args is not ["serve" or "migrate", ..])
            return;
        if (read(SpinLimitVariable) is null)
            setProperty(SpinLimitProperty, 0);
        if (read(InlineCompletionsVariable) is null)
            write(InlineCompletionsVariable, "1");
    }
}
