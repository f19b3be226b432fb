using System.Runtime.InteropServices;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

// Device DMA into client memory: through the mmap of an fd-backed mapping, or DMA_READ/DMA_WRITE messages
// (16-byte {addr, count} head, libvfio-user layout) chunked to the client's max_data_xfer_size. A write through
// the mmap is a write the client does not see, so its pages are reported dirty to DMA logging (spec §7.6).
public sealed partial class VfioUserConnection
{
    /// <summary>Reads client memory at <paramref name="iova"/> (<see cref="DmaAccessMode.Auto"/>).</summary>
    /// <exception cref="VfioException">EFAULT when the range is not inside one mapping; the client's errno.</exception>
    public ValueTask DmaReadAsync(ulong iova, Memory<byte> destination, CancellationToken cancellationToken = default)
        => DmaReadAsync(iova, destination, DmaAccessMode.Auto, cancellationToken);

    /// <summary>Reads client memory at <paramref name="iova"/> the way <paramref name="mode"/> says.</summary>
    /// <exception cref="VfioException">EFAULT when the range is not inside one mapping; the client's errno.</exception>
    public async ValueTask DmaReadAsync(ulong iova, Memory<byte> destination, DmaAccessMode mode, CancellationToken cancellationToken = default)
    {
        var map = FindMapping(iova, destination.Length, "DMA read");
        if (map.IsFdBacked && mode == DmaAccessMode.Auto)
        {
            map.CopyOut(iova, destination.Span);
            return;
        }
        int done = 0;
        while (done < destination.Length)
        {
            int chunk = Math.Min(destination.Length - done, _peerMaxDataTransfer);
            ulong at = iova + (ulong)done;
            var request = new byte[DmaAccessPayload.Length];
            new DmaAccessPayload(at, (ulong)chunk).Encode(request);
            using var reply = await SendDmaCommandAsync(VfioUserCommand.DmaRead, request, cancellationToken).ConfigureAwait(false);
            var head = DmaAccessPayload.Decode(reply.Payload, "DMA_READ reply");
            if (head.Address != at || head.Count != (ulong)chunk || reply.PayloadLength < DmaAccessPayload.Length + chunk)
                VfioException.Throw(Errno.EINVAL, "DMA_READ", "bad reply to DMA transfer (addr/count differ or data missing)");
            reply.Payload.Slice(DmaAccessPayload.Length, chunk).CopyTo(destination.Span[done..]);
            done += chunk;
        }
    }

    /// <summary>Writes client memory at <paramref name="iova"/> (<see cref="DmaAccessMode.Auto"/>).</summary>
    /// <exception cref="VfioException">EFAULT when the range is not inside one mapping; the client's errno.</exception>
    public ValueTask DmaWriteAsync(ulong iova, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        => DmaWriteAsync(iova, source, DmaAccessMode.Auto, cancellationToken);

    /// <summary>Writes client memory at <paramref name="iova"/> the way <paramref name="mode"/> says.</summary>
    /// <exception cref="VfioException">EFAULT when the range is not inside one mapping; the client's errno.</exception>
    public async ValueTask DmaWriteAsync(ulong iova, ReadOnlyMemory<byte> source, DmaAccessMode mode, CancellationToken cancellationToken = default)
    {
        var map = FindMapping(iova, source.Length, "DMA write");
        if (map.IsFdBacked && mode == DmaAccessMode.Auto)
        {
            map.CopyIn(iova, source.Span);
            _device.Migration.MarkDmaWritten(iova, (ulong)source.Length);
            return;
        }
        int done = 0;
        while (done < source.Length)
        {
            int chunk = Math.Min(source.Length - done, _peerMaxDataTransfer);
            ulong at = iova + (ulong)done;
            var request = new byte[DmaAccessPayload.Length + chunk];
            new DmaAccessPayload(at, (ulong)chunk).Encode(request);
            source.Span.Slice(done, chunk).CopyTo(request.AsSpan(DmaAccessPayload.Length));
            using var reply = await SendDmaCommandAsync(VfioUserCommand.DmaWrite, request, cancellationToken).ConfigureAwait(false);
            var head = DmaAccessPayload.Decode(reply.Payload, "DMA_WRITE reply");
            if (head.Address != at || head.Count != (ulong)chunk)
                VfioException.Throw(Errno.EINVAL, "DMA_WRITE", "bad reply to DMA transfer (addr/count differ)");
            done += chunk;
        }
    }

    private DmaMapping FindMapping(ulong iova, int length, string op)
    {
        var map = Dma.Find(iova, (ulong)length);
        if (map is null)
            VfioException.Throw(Errno.EFAULT, op, $"0x{iova:x}+{length} is not inside one DMA mapping");
        var need = op == "DMA read" ? DmaMapPayload.FlagRead : DmaMapPayload.FlagWrite;
        if ((map.Flags & need) == 0)
            VfioException.Throw(Errno.EPERM, op, $"the mapping 0x{map.Address:x} lacks {(need == DmaMapPayload.FlagRead ? "READ" : "WRITE")} permission");
        return map;
    }

    private async Task<VfioUserMessage> SendDmaCommandAsync(VfioUserCommand command, byte[] payload, CancellationToken cancellationToken)
    {
        IVfioUserTransport socket = _twin?.Socket ?? _socket;
        ushort id = (ushort)(Interlocked.Increment(ref _nextDmaId) & 0xFFFF);
        var tcs = new TaskCompletionSource<VfioUserMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_pending.TryAdd(id, tcs))
            VfioException.Throw(Errno.EBUSY, command.ToString(), $"request id {id} is still in flight");
        try
        {
            var message = VfioUserFrame.Build(id, command, VfioUserMessageFlags.Command, payload);
            await socket.SendAsync(message, (IReadOnlyList<SafeHandle>?)null, cancellationToken).ConfigureAwait(false);
            var reply = await tcs.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (reply.Header.IsError)
            {
                var errno = (Errno)(reply.Header.ErrorNo is >= 1 and <= 4096 ? (int)reply.Header.ErrorNo : (int)Errno.EINVAL);
                reply.Dispose();
                throw new VfioException(errno, command.ToString(), "the client refused the DMA request");
            }
            return reply;
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }
}
