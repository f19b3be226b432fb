using Microsoft.Extensions.Logging;

namespace Vfio.Net;

/// <summary>
/// What both ends of a migration session share: the channels, the session's cancellation, and its first fault
/// (later faults are its consequences and are not recorded).
/// </summary>
public abstract class NetSession : IAsyncDisposable
{
    private Exception? _fault;

    private protected NetSession(NetChannel[] channels, Guid sessionId, string side, ILoggerFactory loggerFactory)
    {
        Channels = channels;
        SessionId = sessionId;
        Side = side;
        Logger = loggerFactory.CreateLogger(GetType());
    }

    /// <summary>"sender" or "receiver", as the log and error messages name this end.</summary>
    private protected string Side { get; }

    private protected ILogger Logger { get; }

    /// <summary>The session's id (the sender chooses it).</summary>
    public Guid SessionId { get; }

    /// <summary>Number of connections.</summary>
    public int ChannelCount => Channels.Length;

    /// <summary>True once any fault (or disposal) ended the session.</summary>
    public bool IsFaulted => Volatile.Read(ref _fault) is not null;

    /// <summary>The fault that ended the session, if any.</summary>
    public Exception? FaultReason => Volatile.Read(ref _fault);

    private protected NetChannel[] Channels { get; }

    /// <summary>One channel, for tests that play a hostile peer over an authenticated session.</summary>
    internal NetChannel ChannelAt(int index) => Channels[index];

    /// <summary>Frames and payload bytes on all channels so far, by direction and type.</summary>
    internal IReadOnlyList<(bool Sent, string Type, long Frames, long Bytes)> WireTally() => NetWireTally.Sum(Channels.Select(c => c.Tally));

    private protected CancellationTokenSource Cts { get; } = new();

    /// <summary>The task reading the control channel; an Abort waits (bounded) for the peer to close it.</summary>
    private protected abstract Task ControlReader { get; }

    /// <inheritdoc/>
    public abstract ValueTask DisposeAsync();

    /// <summary>Tells this side's waiters about the first fault (the session's own completion sources).</summary>
    private protected abstract void OnFault(Exception e);

    private protected void ThrowIfFaulted()
    {
        if (Volatile.Read(ref _fault) is { } f)
            throw f;
    }

    private protected void Fault(Exception e)
    {
        if (MarkFault(e))
            NetAbort.CloseAll(Channels, Cts);
    }

    // Records the first fault without closing anything yet, so an Abort can still go out.
    private protected bool MarkFault(Exception e)
    {
        if (Interlocked.CompareExchange(ref _fault, e, null) is not null)
            return false;
        NetLog.Failed(Logger, Side, SessionId, e);
        OnFault(e);
        return true;
    }

    private static readonly TimeSpan PeerReasonGrace = TimeSpan.FromSeconds(1);

    // A data channel that breaks is often the consequence of the peer's Abort, which travels on channel 0 and may
    // still be unread there (a loaded machine schedules the control reader late): wait, bounded, for the control
    // reader to record the peer's reason before recording our own "connection reset". Not from the control
    // reader itself (waitForControl false), which would wait for itself.
    private protected async Task FaultAfterPeerReasonAsync(Exception e, string what, bool waitForControl)
    {
        if (waitForControl && FaultReason is null && e is not OperationCanceledException)
            await Task.WhenAny(ControlReader, Task.Delay(PeerReasonGrace)).ConfigureAwait(false);
        Fault(e is OperationCanceledException && FaultReason is not null ? FaultReason : NetErrors.FromIO(e, what));
    }

    // Records the fault first, then tells the peer (bounded), then closes: the reason stays the one reported.
    private protected async Task MarkTellAndCloseAsync(Exception e, Errno errno, string reason)
    {
        if (!MarkFault(e))
            return;
        NetLog.AbortSent(Logger, Side, errno, reason);
        await NetAbort.TellAndCloseAsync(Channels, ControlReader, Cts, errno, reason).ConfigureAwait(false);
    }

    /// <summary>Ends the session as disposed unless a fault came first; true when this call ended it.</summary>
    private protected bool MarkDisposed(out Exception reason)
    {
        reason = new ObjectDisposedException(GetType().Name);
        return Interlocked.CompareExchange(ref _fault, reason, null) is null;
    }
}
