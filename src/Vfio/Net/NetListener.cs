using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// A listening socket that accepts one migration session: a control connection first (it names the session id and
/// the channel count), then the session's data connections. Every connection goes through TLS (if configured) and
/// the handshake; one that fails them is refused with a reason, reported, and the listener goes on waiting.
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
            // SO_REUSEADDR alone (SOL_SOCKET 1, option 2 on Linux): a new receiver may bind while the previous
            // session's connections linger in TIME_WAIT, but a second listener on the port still fails with
            // EADDRINUSE. SocketOptionName.ReuseAddress would also set SO_REUSEPORT and let two receivers share it.
            socket.SetRawSocketOption(1, 2, BitConverter.GetBytes(1));
            if (address.Equals(IPAddress.IPv6Any))
                socket.DualMode = true; // [::] also takes IPv4 senders
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(16);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw e.SocketErrorCode == SocketError.AddressAlreadyInUse
                ? new VfioException(Errno.EADDRINUSE, $"listen on {host}:{port}", "the port is already in use (another receiver listens there)", e)
                : NetErrors.FromIO(e, $"listen on {host}:{port}");
        }
        return new NetListener(socket);
    }

    /// <summary>
    /// Accepts connections until an authenticated sender has opened one complete session (control + all data
    /// channels), or <see cref="NetAcceptOptions.AcceptTimeout"/> passes (ETIMEDOUT). Connections are handled
    /// concurrently, each within <see cref="NetSecurityOptions.HandshakeTimeout"/>. One that fails TLS or the
    /// handshake, sends garbage, closes, idles or trickles is refused (the sender is told why when the protocol
    /// allows), reported through <see cref="NetAcceptOptions.OnDropped"/>, and does not end the wait. At most
    /// <see cref="NetAcceptOptions.MaxPendingHandshakes"/> connections are in their handshake at once.
    /// A session whose data channels do not all join within the handshake timeout is dropped the same way.
    /// </summary>
    public async Task<NetReceiverSession> AcceptSessionAsync(NetSecurityOptions security, NetSessionOptions? options = null, NetAcceptOptions? accept = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(security);
        security.ValidateReceiver();
        options ??= NetSessionOptions.Default;
        accept ??= NetAcceptOptions.Default;
        var logger = options.LoggerFactory.CreateLogger<NetListener>();
        var assembly = new SessionAssembly(security, accept, logger);
        using var loopCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var loop = Task.Run(() => AcceptLoopAsync(assembly, loopCts.Token), CancellationToken.None);
        bool handedOut = false;
        try
        {
            NetChannel[] channels;
            try
            {
                var done = accept.AcceptTimeout == Timeout.InfiniteTimeSpan ? assembly.Completed : assembly.Completed.WaitAsync(accept.AcceptTimeout, CancellationToken.None);
                channels = await done.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                string dropped = assembly.Dropped == 0 ? "" : $"; {assembly.Dropped} connection(s) were dropped";
                throw new VfioException(Errno.ETIMEDOUT, "receive", $"no authenticated sender opened a migration session within {accept.AcceptTimeout.TotalSeconds:0.#} s (--accept-timeout){dropped}");
            }
            var session = new NetReceiverSession(channels, assembly.SessionId, security, options);
            NetLog.Accepted(logger, session, security);
            handedOut = true;
            return session;
        }
        finally
        {
            await loopCts.CancelAsync().ConfigureAwait(false);
            await loop.ConfigureAwait(false);
            if (!handedOut)
                assembly.Abandon();
        }
    }

    private async Task AcceptLoopAsync(SessionAssembly assembly, CancellationToken cancellationToken)
    {
        var handshakes = new List<Task>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (SocketException e) when (e.SocketErrorCode is not (SocketError.OperationAborted or SocketError.Interrupted or SocketError.Shutdown))
                {
                    // A connection that died in the backlog (ECONNABORTED) or a full fd table (EMFILE) is not the
                    // listener's failure: pause briefly (no busy loop on EMFILE) and go on.
                    await Task.Delay(50, cancellationToken).ConfigureAwait(false);
                    continue;
                }
                string peer = socket.RemoteEndPoint?.ToString() ?? "?";
                handshakes.RemoveAll(t => t.IsCompleted);
                if (handshakes.Count >= assembly.Accept.MaxPendingHandshakes)
                {
                    Abort(socket);
                    assembly.Drop($"connection from {peer}", new VfioException(Errno.EBUSY, $"accept {peer}", $"{handshakes.Count} connections are already in their handshake (the limit)"));
                    continue;
                }
                handshakes.Add(Task.Run(() => AdmitAsync(socket, peer, assembly, cancellationToken), CancellationToken.None));
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            assembly.Fail(new VfioException(Errno.ENOTCONN, "receive", "the listener was closed", e));
        }
        await Task.WhenAll(handshakes).ConfigureAwait(false);
    }

    private static async Task AdmitAsync(Socket socket, string peer, SessionAssembly assembly, CancellationToken cancellationToken)
    {
        Guid? control = null;
        try
        {
            NetChannel.Tune(socket);
            var (channel, hello, secret) = await HandshakeAsync(socket, peer, assembly.Security, h =>
            {
                var verdict = assembly.Check(h);
                if (verdict.Item1 == NetRefusal.None && h.IsControl)
                    control = h.SessionId;
                return verdict;
            }, assembly.SessionSecretAsync, cancellationToken).ConfigureAwait(false);
            if (!hello.IsControl)
                await assembly.WaitForControlAsync(hello.SessionId).ConfigureAwait(false);
            assembly.Join(channel, hello, peer, secret);
        }
        catch (Exception e) when (e is VfioException or IOException or SocketException or ObjectDisposedException)
        {
            if (!cancellationToken.IsCancellationRequested)
                assembly.Drop($"connection from {peer}", NetErrors.FromIO(e, $"handshake with {peer}"));
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            if (control is { } id)
                assembly.ControlSettled(id);
        }
    }

    private static void Abort(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (SocketException)
        {
        }
        socket.Dispose();
    }

    /// <summary>
    /// The session being opened: the first authenticated control channel opens it, its data channels join it. Only
    /// authenticated connections change it, so an unauthenticated peer can neither claim nor block it.
    /// </summary>
    private sealed class SessionAssembly(NetSecurityOptions security, NetAcceptOptions accept, ILogger logger)
    {
        private readonly Lock _lock = new();
        private readonly TaskCompletionSource<NetChannel[]> _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private NetChannel[]? _channels;
        private byte[]? _sessionSecret;
        private int _joined;
        private int _dropped;

        // Control hellos admitted and still in their handshake, by session id: the sender opens its data channels as
        // soon as it reads the control channel's verdict, which can be before that channel has joined here.
        private readonly Dictionary<Guid, (int Count, TaskCompletionSource Settled)> _pendingControls = [];

        public NetSecurityOptions Security => security;

        public NetAcceptOptions Accept => accept;

        public Task<NetChannel[]> Completed => _completed.Task;

        public Guid SessionId { get; private set; }

        public int Dropped => Volatile.Read(ref _dropped);

        /// <summary>Admission of a well-formed hello, before its proof is checked (nothing changes here).</summary>
        public (NetRefusal, string?) Check(NetHello hello)
        {
            lock (_lock)
            {
                if (_completed.Task.IsCompleted)
                    return (NetRefusal.Busy, "this receiver is already receiving a migration");
                if (!hello.IsControl && _pendingControls.ContainsKey(hello.SessionId) && (_channels is null || hello.SessionId != SessionId))
                    return (NetRefusal.None, null);
                if (_channels is null)
                {
                    if (!hello.IsControl)
                        return (NetRefusal.UnknownSession, "no migration session is open here: connect the control channel first");
                    var pending = _pendingControls.TryGetValue(hello.SessionId, out var p) ? p : (Count: 0, Settled: new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                    _pendingControls[hello.SessionId] = (pending.Count + 1, pending.Settled);
                    return (NetRefusal.None, null);
                }
                if (hello.IsControl)
                    return (NetRefusal.Busy, "this receiver is already receiving a migration");
                if (hello.SessionId != SessionId || hello.ChannelCount != _channels.Length || _channels[hello.ChannelIndex] is not null)
                    return (NetRefusal.UnknownSession, "the data channel does not belong to the open session");
                return (NetRefusal.None, null);
            }
        }

        /// <summary>A control channel admitted by <see cref="Check"/> has joined or failed.</summary>
        public void ControlSettled(Guid id)
        {
            lock (_lock)
            {
                if (!_pendingControls.TryGetValue(id, out var p))
                    return;
                if (p.Count > 1)
                {
                    _pendingControls[id] = (p.Count - 1, p.Settled);
                    return;
                }
                _pendingControls.Remove(id);
                p.Settled.TrySetResult();
            }
        }

        /// <summary>Waits (bounded) until a control channel of the session <paramref name="id"/> still in its handshake has settled.</summary>
        public async Task WaitForControlAsync(Guid id)
        {
            Task settled;
            lock (_lock)
            {
                if (!_pendingControls.TryGetValue(id, out var p))
                    return;
                settled = p.Settled.Task;
            }
            await Task.WhenAny(settled, Task.Delay(security.HandshakeTimeout)).ConfigureAwait(false);
        }

        /// <summary>
        /// The secret of the session <paramref name="hello"/> names, for a data channel's proof: waits (bounded) for a control
        /// channel of that session still in its handshake; null when no such session is open.
        /// </summary>
        public async Task<byte[]?> SessionSecretAsync(NetHello hello)
        {
            if (hello.IsControl)
                return null;
            await WaitForControlAsync(hello.SessionId).ConfigureAwait(false);
            lock (_lock)
                return _channels is not null && SessionId == hello.SessionId ? _sessionSecret : null;
        }

        /// <summary>An authenticated connection: opens the session (control, with its secret) or joins it (data).</summary>
        public void Join(NetChannel channel, NetHello hello, string peer, byte[]? secret)
        {
            NetChannel[]? complete = null;
            string? refused = null;
            lock (_lock)
            {
                if (_completed.Task.IsCompleted)
                    refused = "a session is already open";
                else if (hello.IsControl)
                {
                    if (_channels is not null)
                        refused = "another sender opened a session first";
                    else
                    {
                        _channels = new NetChannel[hello.ChannelCount];
                        SessionId = hello.SessionId;
                        _sessionSecret = secret;
                        _joined = 0;
                        _ = ExpireAsync(_channels);
                    }
                }
                else if (_channels is null || hello.SessionId != SessionId || hello.ChannelCount != _channels.Length || _channels[hello.ChannelIndex] is not null)
                    refused = "the data channel does not belong to the open session";
                if (refused is null)
                {
                    _channels![hello.ChannelIndex] = channel;
                    if (++_joined == _channels.Length)
                        complete = _channels;
                }
            }
            if (refused is not null)
            {
                channel.Abort();
                Drop($"connection from {peer}", new VfioException(Errno.EBUSY, $"handshake with {peer}", refused));
                return;
            }
            if (complete is not null)
                _completed.TrySetResult(complete);
        }

        // All data channels must join within the handshake timeout of the control channel; else the session is dropped
        // and the receiver waits for the next sender.
        private async Task ExpireAsync(NetChannel[] channels)
        {
            await Task.Delay(security.HandshakeTimeout).ConfigureAwait(false);
            int joined;
            lock (_lock)
            {
                if (_channels != channels || _completed.Task.IsCompleted)
                    return;
                joined = _joined;
                _channels = null;
            }
            foreach (var c in channels)
                c?.Abort();
            Drop($"session of {channels[0].Name}", new VfioException(Errno.ETIMEDOUT, "receive", $"the sender opened {joined} of {channels.Length} channels and no more within {security.HandshakeTimeout.TotalSeconds:0.#} s"));
        }

        public void Drop(string what, VfioException reason)
        {
            Interlocked.Increment(ref _dropped);
            NetLog.Dropped(logger, what, reason);
            accept.OnDropped?.Invoke($"dropped {what}: {reason.Message}");
        }

        public void Fail(VfioException e) => _completed.TrySetException(e);

        /// <summary>After a wait that ended without handing out the session: closes what had joined.</summary>
        public void Abandon()
        {
            NetChannel[]? left;
            lock (_lock)
            {
                left = _channels;
                _channels = null;
            }
            if (left is not null)
            {
                foreach (var c in left)
                    c?.Abort();
            }
        }
    }

    private static async Task<(NetChannel, NetHello, byte[]?)> HandshakeAsync(Socket socket, string peer, NetSecurityOptions security, Func<NetHello, (NetRefusal, string?)> admit, Func<NetHello, Task<byte[]?>> sessionSecret, CancellationToken cancellationToken)
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
