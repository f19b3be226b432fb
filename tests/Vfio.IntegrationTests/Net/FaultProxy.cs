using System.Net;
using System.Net.Sockets;

namespace Vfio.IntegrationTests.Net;

/// <summary>What the in-test proxy does to the sender→receiver bytes of one connection.</summary>
public enum ProxyFault
{
    None,

    /// <summary>Flip one byte at the offset.</summary>
    Corrupt,

    /// <summary>Stop forwarding (both directions) once the offset is reached, keeping the sockets open.</summary>
    Stall,

    /// <summary>Reset both sides once the offset is reached.</summary>
    Cut,
}

/// <summary>
/// A small TCP proxy on loopback (or any address it is told to listen on) between sender and receiver. It forwards
/// bytes both ways and applies one fault to connection number <c>connection</c> (accept order, 0 = control) at a
/// byte offset of the sender→receiver direction. Bounded: it stops with the test (Dispose).
/// </summary>
internal sealed class FaultProxy : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _target;
    private readonly ProxyFault _fault;
    private readonly int _faultConnection;
    private readonly long _offset;
    private readonly CancellationTokenSource _cts = new();
    private readonly List<Socket> _sockets = [];
    private readonly Task _acceptLoop;
    private int _connections;

    public FaultProxy(IPEndPoint target, ProxyFault fault, int connection, long offset, IPAddress? listenOn = null)
    {
        _target = target;
        _fault = fault;
        _faultConnection = connection;
        _offset = offset;
        _listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(listenOn ?? IPAddress.Loopback, 0));
        _listener.Listen(16);
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    public bool Triggered { get; private set; }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (!_cts.IsCancellationRequested)
            {
                var client = await _listener.AcceptAsync(_cts.Token).ConfigureAwait(false);
                var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await server.ConnectAsync(_target, _cts.Token).ConfigureAwait(false);
                client.NoDelay = true;
                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(server);
                }
                int index = _connections++;
                bool faulty = index == _faultConnection ? _fault != ProxyFault.None : false;
                _ = PumpAsync(client, server, faulty ? _fault : ProxyFault.None, client, server);
                _ = PumpAsync(server, client, ProxyFault.None, client, server);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task PumpAsync(Socket from, Socket to, ProxyFault fault, Socket client, Socket server)
    {
        byte[] buffer = new byte[64 << 10];
        long position = 0;
        try
        {
            while (!_cts.IsCancellationRequested)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, _cts.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }
                if (fault != ProxyFault.None && position + n > _offset && !Triggered)
                {
                    Triggered = true;
                    int at = (int)(_offset - position);
                    switch (fault)
                    {
                        case ProxyFault.Corrupt:
                            buffer[at] ^= 0x5A;
                            break;
                        case ProxyFault.Stall:
                            await to.SendAsync(buffer.AsMemory(0, at), SocketFlags.None, _cts.Token).ConfigureAwait(false);
                            _stalled = true;
                            await Task.Delay(Timeout.Infinite, _cts.Token).ConfigureAwait(false);
                            return;
                        case ProxyFault.Cut:
                            await to.SendAsync(buffer.AsMemory(0, at), SocketFlags.None, _cts.Token).ConfigureAwait(false);
                            client.LingerState = new LingerOption(true, 0);
                            server.LingerState = new LingerOption(true, 0);
                            client.Close();
                            server.Close();
                            return;
                    }
                }
                position += n;
                while (_stalled)
                    await Task.Delay(Timeout.Infinite, _cts.Token).ConfigureAwait(false);
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Pass a reset on: close both ends like a real link failure would.
            client.Dispose();
            server.Dispose();
        }
    }

    private volatile bool _stalled;

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        lock (_sockets)
        {
            foreach (var s in _sockets)
                s.Dispose();
        }
        await _acceptLoop.ConfigureAwait(false);
        _cts.Dispose();
    }
}
