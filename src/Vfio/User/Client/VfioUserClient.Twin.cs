using System.Net.Sockets;
using Vfio.Interop;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Client;

// Twin socket (spec §4.3): the server's DMA_READ/DMA_WRITE arrive on a socket of their own, which the server
// passed in its VERSION reply; we answer them there, so they never interleave with our commands and replies.
public sealed partial class VfioUserClient
{
    private TwinSocket? _twin;

    /// <summary>True when the server enabled the twin socket we asked for.</summary>
    public bool TwinSocketEnabled => _twin is not null;

    private void StartTwinSocket(SafeFdHandle fd)
    {
        const string op = "VERSION";
        int raw = fd.Fd;
        fd.SetHandleAsInvalid(); // ownership moves to the socket below
        Socket socket;
        try
        {
            socket = new Socket(new SafeSocketHandle(raw, ownsHandle: true));
        }
        catch (SocketException ex)
        {
            Interop.Interop.Close(raw);
            throw new VfioException(Errno.EPROTO, op, $"the twin_socket fd is not a usable socket ({ex.Message})", ex);
        }
        _twin = new TwinSocket(new UnixFdSocket(socket, maxReceiveFds: 0, _socket.MaxMessageSize), TwinReadLoopAsync);
    }

    // Only server commands belong here. When the twin socket fails, the server's DMA fails; our own commands
    // still work on the main socket, so the connection stays up.
    private async Task TwinReadLoopAsync(UnixFdSocket twin)
    {
        try
        {
            while (await twin.ReceiveAsync(_shutdown.Token).ConfigureAwait(false) is { } message)
            {
                using (message)
                {
                    if (message.Header.IsCommand)
                        await ServeServerCommandAsync(message, twin).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (VfioException ex)
        {
            TwinFailure = ex;
        }
    }

    /// <summary>Why the twin socket stopped early, if it did (for diagnostics).</summary>
    public Exception? TwinFailure { get; private set; }

    private Task CloseTwinSocketAsync() => _twin?.CloseAsync() ?? Task.CompletedTask;
}
