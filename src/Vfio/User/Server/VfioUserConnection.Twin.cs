using Microsoft.Extensions.Logging;
using Vfio.Interop;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

// Twin socket (spec §4.3): a socketpair whose other end went to the client in the VERSION reply. Our
// DMA_READ/DMA_WRITE commands and the client's replies to them travel on it, apart from the client's commands.
public sealed partial class VfioUserConnection
{
    private TwinSocket? _twin;

    /// <summary>True once the client asked for and got a twin socket.</summary>
    public bool TwinSocketEnabled => _twin is not null;

    // Our end starts its read loop; the returned handle is the client's end, closed by the writer once sent. It is a
    // plain fd: as the handle of a dropped Socket it was closed by that Socket's finalizer when a collection came
    // before the writer, the VERSION reply was never sent, and the client waited for it for ever.
    private SafeFdHandle OpenTwinSocket()
    {
        var (ours, theirs) = UnixFdSocket.CreateSocketPairToPass();
        _twin = new TwinSocket(new UnixFdSocket(ours, maxReceiveFds: 0), TwinReadLoopAsync);
        return theirs;
    }

    // Only replies to our DMA commands belong here; a command on the twin socket is the client's mistake.
    private async Task TwinReadLoopAsync(UnixFdSocket twin)
    {
        try
        {
            while (await twin.ReceiveAsync().ConfigureAwait(false) is { } message)
            {
                if (message.Header.IsReply && _pending.TryRemove(message.Header.MessageId, out var tcs))
                {
                    tcs.TrySetResult(message);
                    continue;
                }
                VfioUserLog.ProtocolError(_logger, Id, $"twin socket: unexpected {(message.Header.IsReply ? "reply" : "command")} {message.Header.Command} id {message.Header.MessageId} ignored");
                message.Dispose();
            }
        }
        catch (VfioException ex)
        {
            VfioUserLog.ProtocolError(_logger, Id, "twin socket: " + ex.Message);
        }
        FailPending(new VfioException(Errno.ECONNRESET, "vfio-user DMA request", "the twin socket closed"));
    }

    private Task CloseTwinSocketAsync() => _twin?.CloseAsync() ?? Task.CompletedTask;
}
