namespace Vfio.Net;

// How either side ends a session on a fault: tell the peer why, let it read that, then close every channel.
internal static class NetAbort
{
    /// <summary>Sends an Abort frame on the control channel (bounded), lingers, then closes all channels.</summary>
    public static async Task TellAndCloseAsync(NetChannel[] channels, Task controlReader, CancellationTokenSource session, Errno errno, string reason)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await channels[0].WriteFrameAsync(NetFrameType.Abort, 0, NetStatus.EncodeAbort(errno, reason), cts.Token).ConfigureAwait(false);
        }
        catch (Exception x) when (x is VfioException or OperationCanceledException)
        {
            // Best effort: the control channel or the link may be the very reason for the abort.
        }
        await LingerAsync(channels[0], controlReader).ConfigureAwait(false);
        CloseAll(channels, session);
    }

    /// <summary>Cancels the session and aborts every channel.</summary>
    public static void CloseAll(NetChannel[] channels, CancellationTokenSource session)
    {
        session.Cancel();
        foreach (var c in channels)
            c.Abort();
    }

    // A reset would make the peer's kernel drop the Abort still in its receive queue: end our side of the
    // control channel with a FIN and give the peer a moment (bounded) to read the Abort and close first.
    private static async Task LingerAsync(NetChannel control, Task controlReader)
    {
        try
        {
            control.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            await controlReader.WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
        catch (Exception x) when (x is System.Net.Sockets.SocketException or ObjectDisposedException or TimeoutException or VfioException or OperationCanceledException or IOException)
        {
            // Closing anyway.
        }
    }
}
