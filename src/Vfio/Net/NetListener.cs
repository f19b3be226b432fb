using System.Net;
using System.Net.Sockets;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// A listening socket that accepts one migration session at a time: a control connection first (it names the
/// session id and the channel count), then the session's data connections. Every connection goes through TLS
/// (if configured) and the handshake; anything that fails them is refused with a reason and reported.
/// </summary>
public sealed class NetListener : IAsyncDisposable
{
    private readonly Socket _socket;

    private NetListener(Socket socket) => _socket = socket;

    /// <summary>The bound address (useful with port 0).</summary>
    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    /// <summary>Binds <paramref name="host"/>:<paramref name="port"/> (host may be an IP, <c>localhost</c>, <c>0.0.0.0</c> or <c>[::]</c>).</summary>
    public static NetListener Bind(string host, int port)
    {
        ArgumentNullException.ThrowIfNull(host);
        IPAddress address;
        string h = host.Trim('[', ']');
        if (h is "" or "*")
            address = IPAddress.Any;
        else if (h == "localhost")
            address = IPAddress.Loopback;
        else if (!IPAddress.TryParse(h, out address!))
            throw new VfioException(Errno.EINVAL, $"listen on {host}:{port}", "give an IP address to listen on (e.g. 0.0.0.0, 127.0.0.1 or [::])");
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (address.Equals(IPAddress.IPv6Any))
                socket.DualMode = true; // [::] also takes IPv4 senders
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(16);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new VfioException(e.SocketErrorCode == SocketError.AddressAlreadyInUse ? Errno.EBUSY : Errno.EIO, $"listen on {host}:{port}", e.SocketErrorCode == SocketError.AddressAlreadyInUse ? "the port is already in use" : e.Message, e);
        }
        return new NetListener(socket);
    }

    /// <summary>
    /// Accepts connections until one complete session (control + all data channels) has joined. A connection that
    /// fails TLS or the handshake is refused (the sender is told why) and the failure is thrown here too.
    /// </summary>
    public async Task<NetReceiverSession> AcceptSessionAsync(NetSecurityOptions security, NetSessionOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(security);
        security.ValidateReceiver();
        options ??= NetSessionOptions.Default;
        NetChannel[]? channels = null;
        Guid session = Guid.Empty;
        byte[]? sessionSecret = null;
        int joined = 0;
        try
        {
            while (channels is null || joined < channels.Length)
            {
                Socket socket;
                using (var acceptCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                {
                    if (channels is not null)
                        acceptCts.CancelAfter(security.HandshakeTimeout);
                    try
                    {
                        socket = await _socket.AcceptAsync(acceptCts.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        throw new VfioException(Errno.ETIMEDOUT, "receive", $"the sender opened {joined} of {channels!.Length} channels and no more within {security.HandshakeTimeout.TotalSeconds:0.#} s");
                    }
                }
                NetChannel.Tune(socket);
                string peer = socket.RemoteEndPoint?.ToString() ?? "?";
                var channel = await HandshakeAsync(socket, peer, security, sessionSecret, hello =>
                {
                    if (channels is null)
                    {
                        if (!hello.IsControl)
                            return (NetRefusal.UnknownSession, "no migration session is open here: connect the control channel first");
                        return (NetRefusal.None, null);
                    }
                    if (hello.IsControl)
                        return (NetRefusal.Busy, "this receiver is already receiving a migration");
                    if (hello.SessionId != session || hello.ChannelCount != channels.Length || channels[hello.ChannelIndex] is not null)
                        return (NetRefusal.UnknownSession, "the data channel does not belong to the open session");
                    return (NetRefusal.None, null);
                }, cancellationToken).ConfigureAwait(false);
                var (ch, h, secret) = channel;
                if (channels is null)
                {
                    channels = new NetChannel[h.ChannelCount];
                    session = h.SessionId;
                    sessionSecret = secret;
                }
                channels[h.ChannelIndex] = ch;
                joined++;
            }
            return new NetReceiverSession(channels, session, security, options);
        }
        catch
        {
            if (channels is not null)
            {
                foreach (var c in channels)
                    c?.Abort();
            }
            throw;
        }
    }

    private static async Task<(NetChannel, NetHello, byte[]?)> HandshakeAsync(Socket socket, string peer, NetSecurityOptions security, byte[]? sessionSecret, Func<NetHello, (NetRefusal, string?)> admit, CancellationToken cancellationToken)
    {
        Stream stream = new NetworkStream(socket, ownsSocket: false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(security.HandshakeTimeout);
        try
        {
            byte[] first = new byte[1];
            int n = await socket.ReceiveAsync(first, SocketFlags.Peek, cts.Token).ConfigureAwait(false);
            if (n == 0)
                throw new VfioException(Errno.ECONNRESET, $"handshake with {peer}", "the peer closed the connection without a word");
            bool tlsHello = first[0] == 0x16;
            if (security.UseTls && !tlsHello)
            {
                await NetHandshake.RefusePlainAsync(stream, NetRefusal.TlsRequired, "this receiver requires TLS: give the sender --tls-ca (and --tls-cert/--tls-key if it asks for a client certificate)", cts.Token).ConfigureAwait(false);
                throw new VfioException(Errno.EACCES, $"handshake with {peer}", "the sender spoke plain TCP but this receiver requires TLS");
            }
            if (!security.UseTls && tlsHello)
                throw new VfioException(Errno.EPROTO, $"handshake with {peer}", "the sender started TLS but this receiver has no --tls-cert/--tls-key (plain TCP with a token, or TLS on both sides)");
            if (security.UseTls)
                stream = await NetTls.AuthenticateServerAsync(stream, peer, security, cts.Token).ConfigureAwait(false);
            byte[] binding = security.UseTls ? NetTls.Binding(security.Certificate) : [];
            var result = await NetHandshake.RunServerAsync(stream, security, admit, binding, sessionSecret, peer, cts.Token).ConfigureAwait(false);
            var hello = result.Hello;
            string name = hello.IsControl ? $"control channel from {peer}" : $"channel {hello.ChannelIndex} from {peer}";
            return (new NetChannel(socket, stream, hello.ChannelIndex, name, result.Keys), hello, result.SessionSecret);
        }
        catch (Exception e)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            socket.Dispose();
            if (e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
                throw new VfioException(Errno.ETIMEDOUT, $"handshake with {peer}", $"the sender did not complete the handshake within {security.HandshakeTimeout.TotalSeconds:0.#} s");
            if (e is VfioException)
                throw;
            throw NetErrors.FromIO(e, $"handshake with {peer}");
        }
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
