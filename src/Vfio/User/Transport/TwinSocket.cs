namespace Vfio.User.Transport;

/// <summary>
/// A twin socket (spec §4.3) and the loop that reads it, for either side. Closing shuts the socket down, waits
/// for the loop to see that, then disposes it.
/// </summary>
internal sealed class TwinSocket
{
    private readonly Task _loop;

    public TwinSocket(UnixFdSocket socket, Func<UnixFdSocket, Task> readLoop)
    {
        Socket = socket;
        _loop = Task.Run(() => readLoop(socket), CancellationToken.None);
    }

    public UnixFdSocket Socket { get; }

    // Shutdown wakes the loop's pending receive; should it not end promptly anyway, disposing the socket aborts the
    // receive, so closing never waits on the peer.
    public async Task CloseAsync()
    {
        Socket.Shutdown();
        if (await Task.WhenAny(_loop, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false) != _loop)
            Socket.Dispose();
        await _loop.ConfigureAwait(false);
        Socket.Dispose();
    }
}
