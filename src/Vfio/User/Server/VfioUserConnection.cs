using System.Buffers;
using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Vfio.Interop;
using Vfio.Migration;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

/// <summary>
/// One client of a vfio-user server. A read loop frames messages: replies complete server-initiated DMA
/// requests, commands go (in order) to one worker that executes them serially and replies in command order.
/// Commands that arrive while the server awaits a DMA reply are simply queued (spec §10.1 item 6).
/// On disconnect: DMA maps removed, IRQ eventfds closed, migration state kept.
/// </summary>
public sealed partial class VfioUserConnection : IAsyncDisposable
{
    private readonly IVfioUserTransport _socket;
    private readonly VfioUserDeviceDefinition _device;
    private readonly VfioUserServerOptions _options;
    private readonly ILogger _logger;
    // Both queues are bounded: a client that keeps sending without reading replies stalls its own connection (the
    // read loop stops reading, the socket fills) and never grows the server's memory past a few replies.
    private readonly Channel<VfioUserMessage> _commands = Channel.CreateBounded<VfioUserMessage>(new BoundedChannelOptions(VfioUserTuning.MaxQueuedCommands) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly Channel<(VfioUserHeader Request, OutgoingReply Reply)> _replies = Channel.CreateBounded<(VfioUserHeader, OutgoingReply)>(new BoundedChannelOptions(VfioUserTuning.MaxQueuedReplies) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly ConcurrentDictionary<ushort, TaskCompletionSource<VfioUserMessage>> _pending = new();
    private readonly SafeFdHandle?[][] _irqFds;
    private bool _negotiated;
    private int _peerMaxFds = VfioUserSpec.DefaultMaxMessageFds;
    private int _peerMaxDataTransfer = VfioUserSpec.DefaultMaxDataTransferBytes;
    private int _nextDmaId;
    private volatile bool _closing;

    internal VfioUserConnection(IVfioUserTransport socket, VfioUserDeviceDefinition device, VfioUserServerOptions options, int id)
    {
        _socket = socket;
        _device = device;
        _options = options;
        Id = id;
        _logger = options.LoggerFactory.CreateLogger<VfioUserConnection>();
        _irqFds = new SafeFdHandle?[device.IrqCount][];
        for (uint i = 0; i < device.IrqCount; i++)
            _irqFds[i] = new SafeFdHandle?[device.GetIrqCount(i)];
    }

    /// <summary>Connection number (1, 2, … per server).</summary>
    public int Id { get; }

    /// <summary>The client's DMA mappings.</summary>
    internal DmaMapTable Dma { get; } = new();

    /// <summary>True once VERSION succeeded.</summary>
    public bool IsNegotiated => _negotiated;

    /// <summary>The max_data_xfer_size the client advertised.</summary>
    public int PeerMaxDataTransferBytes => _peerMaxDataTransfer;

    /// <summary>Runs the connection until the client goes away, a fatal protocol error, or cancellation.</summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _device.ConnectionAttached?.Invoke(this);
        var worker = Task.Run(() => WorkerAsync(cts.Token), CancellationToken.None);
        string reason = "end of stream";
        var handshakeTimer = _options.HandshakeTimeout > TimeSpan.Zero && _options.HandshakeTimeout != Timeout.InfiniteTimeSpan
            ? new Timer(_ =>
            {
                if (!_negotiated)
                {
                    _closing = true;
                    _socket.Shutdown();
                }
            }, null, _options.HandshakeTimeout, Timeout.InfiniteTimeSpan)
            : null;
        try
        {
            while (!_closing)
            {
                VfioUserMessage? message;
                try
                {
                    message = await _socket.ReceiveAsync(cts.Token).ConfigureAwait(false);
                }
                catch (VfioUserFramingException ex)
                {
                    // The body was not read; answer the command (if it was one, and if the queue has room: a client
                    // that reads nothing does not get to hold the connection open) and close: the stream is lost.
                    reason = ex.Message;
                    VfioUserLog.ProtocolError(_logger, Id, ex.Message);
                    if (ex.Header.IsCommand && !ex.Header.NoReply)
                        _commands.Writer.TryWrite(VfioUserMessage.FromBytes(ex.Header with { MessageSize = uint.MaxValue }, []));
                    break;
                }
                if (message is null)
                    break;
                if (message.Header.IsReply && _pending.TryRemove(message.Header.MessageId, out var tcs))
                {
                    tcs.TrySetResult(message);
                    continue;
                }
                await _commands.Writer.WriteAsync(message, cts.Token).ConfigureAwait(false);
            }
            if (_closing)
                reason = _negotiated ? "closed by the server after a fatal error" : "no valid VERSION (error or handshake timeout)";
        }
        catch (VfioUserProtocolException ex)
        {
            reason = ex.Message;
            VfioUserLog.ProtocolError(_logger, Id, ex.Message);
        }
        catch (VfioException ex)
        {
            reason = ex.Message;
        }
        catch (OperationCanceledException)
        {
            reason = "server shutting down";
        }
        finally
        {
            if (handshakeTimer is not null)
                await handshakeTimer.DisposeAsync().ConfigureAwait(false);
            _commands.Writer.TryComplete();
            try
            {
                await worker.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            FailPending(new VfioException(Errno.ECONNRESET, "vfio-user DMA request", "the client disconnected"));
            _device.ConnectionDetached?.Invoke(this);
            await CloseTwinSocketAsync().ConfigureAwait(false);
            Cleanup();
            VfioUserLog.ClientDisconnected(_logger, Id, reason);
            // Unlike a kernel device (closing its fd resets it), the device keeps its migration state: a source
            // whose migration may have been committed must never resume by itself, and a destination may hold
            // the only live copy of a committed state (docs/commit-protocol.md).
            if (_device.Migration.State != VfioMigrationState.Running)
                VfioUserLog.ClientLeftMidMigration(_logger, Id, MigrationStateMachine.Name(_device.Migration.State));
        }
    }

    // Executes commands in order. Replies go to the writer loop, so the next command (e.g. the next pipelined
    // MIG_DATA_READ) is produced while the previous reply is still being sent.
    private async Task WorkerAsync(CancellationToken cancellationToken)
    {
        var writer = Task.Run(() => WriterAsync(cancellationToken), CancellationToken.None);
        try
        {
            await foreach (var message in _commands.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                using (message)
                {
                    if (_closing)
                        continue;
                    OutgoingReply reply;
                    if (message.Header.MessageSize == uint.MaxValue)
                        reply = OutgoingReply.Fail(Errno.EINVAL, closeAfter: true); // framing error marker
                    else
                        reply = Dispatch(message);
                    if (!message.Header.NoReply)
                    {
                        await QueueReplyAsync(message.Header, reply, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        Release(reply);
                        if (reply.CloseAfter)
                            await QueueReplyAsync(message.Header, OutgoingReply.CloseMarker, cancellationToken).ConfigureAwait(false);
                    }
                    if (reply.CloseAfter)
                        _closing = true;
                }
            }
        }
        finally
        {
            _replies.Writer.TryComplete();
            await writer.ConfigureAwait(false);
        }
    }

    // Waits while MaxQueuedReplies are still unsent (the client is not reading). A reply that never gets queued
    // (shutdown) gives back its buffer and fds here.
    private async ValueTask QueueReplyAsync(VfioUserHeader request, OutgoingReply reply, CancellationToken cancellationToken)
    {
        try
        {
            await _replies.Writer.WriteAsync((request, reply), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Release(reply);
            throw;
        }
    }

    private static void Release(OutgoingReply reply)
    {
        if (reply.Pooled && reply.Buffer is not null)
            ArrayPool<byte>.Shared.Return(reply.Buffer);
        foreach (var fd in reply.Fds ?? [])
            fd.Dispose();
    }

    private async Task WriterAsync(CancellationToken cancellationToken)
    {
        bool broken = false;
        try
        {
            await foreach (var (request, reply) in _replies.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    if (!broken && !reply.IsCloseMarker)
                        await SendReplyAsync(request, reply, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Whatever failed the send (an errno, a handle closed under us), the client must not wait for
                    // this reply: the connection goes down and the client sees it end.
                    broken = true;
                    _closing = true;
                    _socket.Shutdown();
                }
                finally
                {
                    Release(reply); // sendmsg gave the client its own copies of the fds
                }
                if (reply.CloseAfter)
                {
                    _closing = true;
                    _socket.Shutdown();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Shutting down: drop what is left.
            while (_replies.Reader.TryRead(out var left))
                Release(left.Reply);
        }
    }

    private async ValueTask SendReplyAsync(VfioUserHeader request, OutgoingReply reply, CancellationToken cancellationToken)
    {
        var flags = VfioUserMessageFlags.Reply;
        byte[] buffer;
        int length;
        if (reply.Error != Errno.None)
        {
            // Header-only error replies (spec §3: libvfio-user's client would desync on a payload).
            flags |= VfioUserMessageFlags.Error;
            buffer = new byte[VfioUserHeader.Size];
            length = VfioUserHeader.Size;
        }
        else
        {
            buffer = reply.Buffer!;
            length = reply.Length;
            if (!reply.Tail.IsEmpty)
            {
                new VfioUserHeader(request.MessageId, request.Command, (uint)(length + reply.Tail.Length), flags, 0).Encode(buffer);
                await _socket.SendInTwoPartsAsync(buffer.AsMemory(0, length), reply.Tail, cancellationToken).ConfigureAwait(false);
                return;
            }
        }
        new VfioUserHeader(request.MessageId, request.Command, (uint)length, flags, (uint)reply.Error).Encode(buffer);
        await _socket.SendAsync(buffer.AsMemory(0, length), reply.Error == Errno.None ? reply.Fds : null, cancellationToken).ConfigureAwait(false);
    }

    private void FailPending(Exception reason)
    {
        foreach (var key in _pending.Keys)
        {
            if (_pending.TryRemove(key, out var tcs))
                tcs.TrySetException(reason);
        }
    }

    private void Cleanup()
    {
        Dma.Dispose();
        foreach (var vectors in _irqFds)
        {
            for (int i = 0; i < vectors.Length; i++)
            {
                vectors[i]?.Dispose();
                vectors[i] = null;
            }
        }
    }

    /// <summary>Signals IRQ <paramref name="index"/> vector <paramref name="vector"/> (writes 1 to its eventfd). False when none is assigned.</summary>
    public unsafe bool TriggerIrq(uint index, uint vector)
    {
        if (index >= _irqFds.Length || vector >= _irqFds[index].Length)
            return false;
        var fd = _irqFds[index][vector];
        if (fd is null || fd.IsClosed)
            return false;
        ulong one = 1;
        bool added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            return Interop.Interop.Write(fd.Fd, (byte*)&one, 8) == 8;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            if (added)
                fd.DangerousRelease();
        }
    }

    /// <summary>Closes the connection.</summary>
    public ValueTask DisposeAsync()
    {
        _closing = true;
        _socket.Shutdown();
        return ValueTask.CompletedTask;
    }

    private bool IsAllowedInState(VfioUserCommand command)
    {
        // DEVICE_RESET is accepted in every state: it is the way out of ERROR and of an abandoned
        // RESUMING or STOP_COPY (kernel §3.4). libvfio-user refuses it in STOP/STOP_COPY; accepting
        // more than a peer does cannot break a client.
        if (command == VfioUserCommand.DeviceReset)
            return true;
        var state = _device.Migration.State;
        // Otherwise libvfio-user's gating (spec §7.4): STOP and STOP_COPY refuse most commands.
        return state switch
        {
            VfioMigrationState.Stop => command is VfioUserCommand.RegionRead or VfioUserCommand.RegionWrite or VfioUserCommand.DeviceFeature
                or VfioUserCommand.MigDataRead or VfioUserCommand.MigDataWrite,
            VfioMigrationState.StopCopy => command is VfioUserCommand.DeviceFeature or VfioUserCommand.MigDataRead or VfioUserCommand.MigDataWrite,
            _ => true,
        };
    }
}
