namespace Vfio.Net;

/// <summary>How a receiver waits for its sender (<see cref="NetListener.AcceptSessionAsync"/>).</summary>
public sealed record NetAcceptOptions
{
    /// <summary>Wait without limit, at most 16 connections in their handshake at once, no log.</summary>
    public static NetAcceptOptions Default { get; } = new();

    /// <summary>
    /// Longest wait for an authenticated sender to open a complete session (ETIMEDOUT after it);
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits until cancelled.
    /// </summary>
    public TimeSpan AcceptTimeout { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Most connections that have not completed their handshake yet, held at once. A connection beyond it is closed
    /// at once, so peers that never authenticate cannot make the receiver hold sockets without bound.
    /// </summary>
    public int MaxPendingHandshakes { get; init; } = 16;

    /// <summary>Called with one line for each connection that is dropped (failed TLS or handshake, garbage, silence, over the limit).</summary>
    public Action<string>? OnDropped { get; init; }
}
