using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Vfio.IntegrationTests.Net;

/// <summary>What the in-test proxy does to one direction of one connection at a byte offset.</summary>
public enum ProxyFault
{
    None,

    /// <summary>Flip one byte at the offset (XOR 0x5A).</summary>
    Corrupt,

    /// <summary>Stop forwarding (every connection, both directions) once the offset is reached, keeping the sockets open.</summary>
    Stall,

    /// <summary>Reset (RST) both sides of the connection once the offset is reached.</summary>
    Cut,

    /// <summary>Close (FIN) both sides of the connection once the offset is reached: bytes before it arrive, nothing after.</summary>
    Fin,

    /// <summary>Flip one bit of the byte at the offset (bit offset mod 8).</summary>
    FlipBit,
}

/// <summary>Which bytes of a connection the proxy's offset counts.</summary>
public enum ProxyDirection
{
    /// <summary>Sender → receiver (the forward stream).</summary>
    Forward,

    /// <summary>Receiver → sender (the return path).</summary>
    Return,
}

/// <summary>
/// A small TCP proxy on loopback (or any address it is told to listen on) between sender and receiver. It forwards
/// bytes both ways, counts them per connection and direction, and applies one fault to connection number
/// <c>connection</c> (accept order, 0 = control) at a byte offset of one direction. Bounded: it stops with the
/// test (Dispose).
/// </summary>
internal sealed class FaultProxy : TcpRelay
{
    private readonly ProxyFault _fault;
    private readonly int _faultConnection;
    private readonly long _offset;
    private readonly ProxyDirection _direction;
    private readonly ConcurrentDictionary<(int, ProxyDirection), long> _bytes = new();
    private int _connections;
    private volatile bool _stalled;
    private volatile bool _triggered;

    public FaultProxy(IPEndPoint target, ProxyFault fault, int connection, long offset, IPAddress? listenOn = null, ProxyDirection direction = ProxyDirection.Forward)
        : base(target, listenOn, backlog: 64)
    {
        _fault = fault;
        _faultConnection = connection;
        _offset = offset;
        _direction = direction;
        Start();
    }

    public bool Triggered => _triggered;

    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Bytes forwarded so far on connection <paramref name="connection"/> in <paramref name="direction"/>.</summary>
    public long BytesSeen(int connection, ProxyDirection direction) => _bytes.GetValueOrDefault((connection, direction));

    protected override void OnConnection(int index, Socket client, Socket server)
    {
        Interlocked.Increment(ref _connections);
        var fault = index == _faultConnection ? _fault : ProxyFault.None;
        _ = PumpAsync(index, ProxyDirection.Forward, client, server, _direction == ProxyDirection.Forward ? fault : ProxyFault.None, client, server);
        _ = PumpAsync(index, ProxyDirection.Return, server, client, _direction == ProxyDirection.Return ? fault : ProxyFault.None, client, server);
    }

    private async Task PumpAsync(int index, ProxyDirection direction, Socket from, Socket to, ProxyFault fault, Socket client, Socket server)
    {
        byte[] buffer = new byte[64 << 10];
        long position = 0;
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
                if (fault != ProxyFault.None && position + n > _offset && !_triggered)
                {
                    _triggered = true;
                    int at = (int)(_offset - position);
                    switch (fault)
                    {
                        case ProxyFault.Corrupt:
                            buffer[at] ^= 0x5A;
                            break;
                        case ProxyFault.FlipBit:
                            buffer[at] ^= (byte)(1 << (int)(_offset % 8));
                            break;
                        case ProxyFault.Stall:
                            await SendAsync(to, buffer.AsMemory(0, at), index, direction, position).ConfigureAwait(false);
                            _stalled = true;
                            await Task.Delay(Timeout.Infinite, Cts.Token).ConfigureAwait(false);
                            return;
                        case ProxyFault.Cut:
                            await SendAsync(to, buffer.AsMemory(0, at), index, direction, position).ConfigureAwait(false);
                            client.LingerState = new LingerOption(true, 0);
                            server.LingerState = new LingerOption(true, 0);
                            client.Close();
                            server.Close();
                            return;
                        case ProxyFault.Fin:
                            await SendAsync(to, buffer.AsMemory(0, at), index, direction, position).ConfigureAwait(false);
                            client.Shutdown(SocketShutdown.Both);
                            server.Shutdown(SocketShutdown.Both);
                            client.Close();
                            server.Close();
                            return;
                    }
                }
                while (_stalled)
                    await Task.Delay(Timeout.Infinite, Cts.Token).ConfigureAwait(false);
                await SendAsync(to, buffer.AsMemory(0, n), index, direction, position).ConfigureAwait(false);
                position += n;
            }
        }
        catch (Exception e) when (IsStop(e))
        {
            // Pass a reset on: close both ends like a real link failure would.
            client.Dispose();
            server.Dispose();
        }
    }

    private async Task SendAsync(Socket to, ReadOnlyMemory<byte> bytes, int index, ProxyDirection direction, long position)
    {
        if (bytes.Length > 0)
            await to.SendAsync(bytes, SocketFlags.None, Cts.Token).ConfigureAwait(false);
        _bytes[(index, direction)] = position + bytes.Length;
    }
}
