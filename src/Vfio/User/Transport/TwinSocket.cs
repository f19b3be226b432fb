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

    public async Task CloseAsync()
    {
        Socket.Shutdown();
        await _loop.ConfigureAwait(false);
        Socket.Dispose();
    }
}
