using System.Net;
using System.Net.Sockets;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// What every in-test TCP man in the middle shares: a listener, a connection to the target per accepted client, the
/// sockets to close, and a plain pump. A subclass decides what runs on each connection pair. Bounded: it stops
/// with the test (Dispose).
/// </summary>
internal abstract class TcpRelay : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _target;
    private readonly List<Socket> _sockets = [];
    private Task _acceptLoop = Task.CompletedTask;

    protected TcpRelay(IPEndPoint target, IPAddress? listenOn = null, int backlog = 16)
    {
        _target = target;
        _listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(listenOn ?? IPAddress.Loopback, 0));
        _listener.Listen(backlog);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    protected CancellationTokenSource Cts { get; } = new();

    /// <summary>Starts accepting; call at the end of the subclass's constructor, once its fields are set.</summary>
    protected void Start() => _acceptLoop = Task.Run(AcceptLoopAsync);

    /// <summary>Starts the work on connection <paramref name="index"/> (accept order, 0 = control) between the client and the target.</summary>
    protected abstract void OnConnection(int index, Socket client, Socket server);

    private async Task AcceptLoopAsync()
    {
        try
        {
            for (int index = 0; !Cts.IsCancellationRequested; index++)
            {
                var client = await _listener.AcceptAsync(Cts.Token).ConfigureAwait(false);
                var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(server);
                }
                await server.ConnectAsync(_target, Cts.Token).ConfigureAwait(false);
                client.NoDelay = true;
                OnConnection(index, client, server);
            }
        }
        catch (Exception e) when (IsStop(e))
        {
        }
    }

    /// <summary>Forwards bytes until either side ends; a FIN is passed on, a failure closes both sockets.</summary>
    protected async Task PumpAsync(Socket from, Socket to)
    {
        byte[] buffer = new byte[64 << 10];
        try
        {
            while (!Cts.IsCancellationRequested)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, Cts.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, Cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (IsStop(e))
        {
            from.Dispose();
            to.Dispose();
        }
    }

    /// <summary>The ends of a pump: the test stopped it or a socket closed or reset.</summary>
    protected static bool IsStop(Exception e) => e is OperationCanceledException or SocketException or ObjectDisposedException;

    public async ValueTask DisposeAsync()
    {
        await Cts.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        lock (_sockets)
        {
            foreach (var s in _sockets)
                s.Dispose();
        }
        await _acceptLoop.ConfigureAwait(false);
        Cts.Dispose();
    }
}
