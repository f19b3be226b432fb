using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Interop;
using Vfio.Uapi;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Client;

// Typed commands. Every reply is checked for the length the command needs before it is read.
public sealed partial class VfioUserClient
{
    /// <summary>DEVICE_GET_INFO.</summary>
    public async Task<DeviceInfoPayload> GetDeviceInfoAsync(CancellationToken cancellationToken = default)
    {
        using var reply = await RequestAsync(VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(DeviceInfoPayload.Length, 0, 0, 0).Encode(), null, cancellationToken).ConfigureAwait(false);
        return DeviceInfoPayload.Decode(reply.Payload, "DEVICE_GET_INFO reply");
    }

    /// <summary>DEVICE_GET_REGION_INFO (argsz 32: no caps, no fd).</summary>
    public async Task<RegionInfoPayload> GetRegionInfoAsync(uint index, CancellationToken cancellationToken = default)
    {
        using var reply = await RequestAsync(VfioUserCommand.DeviceGetRegionInfo, new RegionInfoPayload(RegionInfoPayload.Length, 0, index, 0, 0, 0).Encode(), null, cancellationToken).ConfigureAwait(false);
        return RegionInfoPayload.Decode(reply.Payload);
    }

    /// <summary>DEVICE_GET_IRQ_INFO.</summary>
    public async Task<IrqInfoPayload> GetIrqInfoAsync(uint index, CancellationToken cancellationToken = default)
    {
        using var reply = await RequestAsync(VfioUserCommand.DeviceGetIrqInfo, new IrqInfoPayload(IrqInfoPayload.Length, 0, index, 0).Encode(), null, cancellationToken).ConfigureAwait(false);
        return IrqInfoPayload.Decode(reply.Payload);
    }

    /// <summary>REGION_READ, chunked to what both sides accept.</summary>
    public async Task RegionReadAsync(uint region, ulong offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int chunk = Math.Min(destination.Length - done, ReadChunk);
            var request = new byte[RegionAccessPayload.Length];
            new RegionAccessPayload(offset + (ulong)done, region, (uint)chunk).Encode(request);
            using var reply = await RequestAsync(VfioUserCommand.RegionRead, request, null, cancellationToken).ConfigureAwait(false);
            var head = RegionAccessPayload.Decode(reply.Payload, "REGION_READ reply");
            if (head.Count != (uint)chunk || reply.PayloadLength < RegionAccessPayload.Length + chunk)
                VfioException.Throw(Errno.EPROTO, "REGION_READ", $"asked {chunk} bytes, the reply has {reply.PayloadLength - RegionAccessPayload.Length}");
            reply.Payload.Slice(RegionAccessPayload.Length, chunk).CopyTo(destination.Span[done..]);
            done += chunk;
        }
    }

    /// <summary>REGION_WRITE, chunked (≤ 64 KiB by default).</summary>
    public async Task RegionWriteAsync(uint region, ulong offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        int done = 0;
        while (done < source.Length)
        {
            int chunk = Math.Min(source.Length - done, WriteChunk);
            var request = new byte[RegionAccessPayload.Length + chunk];
            new RegionAccessPayload(offset + (ulong)done, region, (uint)chunk).Encode(request);
            source.Span.Slice(done, chunk).CopyTo(request.AsSpan(RegionAccessPayload.Length));
            using var reply = await RequestAsync(VfioUserCommand.RegionWrite, request, null, cancellationToken).ConfigureAwait(false);
            done += chunk;
        }
    }

    /// <summary>DEVICE_SET_IRQS TRIGGER|EVENTFD for vectors start.. (one eventfd each; empty = de-assign).</summary>
    public async Task SetIrqEventFdsAsync(uint index, uint start, IReadOnlyList<SafeHandle> eventFds, uint count, CancellationToken cancellationToken = default)
    {
        var head = new SetIrqsPayload(SetIrqsPayload.Length, SetIrqsPayload.ActionTrigger | SetIrqsPayload.DataEventFd, index, start, count).Encode();
        using var reply = await RequestAsync(VfioUserCommand.DeviceSetIrqs, head, eventFds, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>DEVICE_SET_IRQS with arbitrary flags and no fds (e.g. TRIGGER|NONE).</summary>
    public async Task SetIrqsAsync(uint flags, uint index, uint start, uint count, CancellationToken cancellationToken = default)
    {
        var head = new SetIrqsPayload(SetIrqsPayload.Length, flags, index, start, count).Encode();
        using var reply = await RequestAsync(VfioUserCommand.DeviceSetIrqs, head, null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>DMA_MAP of an fd-backed range (the server mmaps <paramref name="fd"/> at <paramref name="offset"/>).</summary>
    public async Task DmaMapAsync(ulong iova, ulong size, SafeHandle fd, ulong offset, uint flags = DmaMapPayload.FlagRead | DmaMapPayload.FlagWrite, CancellationToken cancellationToken = default)
    {
        var request = new DmaMapPayload(DmaMapPayload.Length, flags, offset, iova, size).Encode();
        using var reply = await RequestAsync(VfioUserCommand.DmaMap, request, [fd], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>DMA_MAP in message mode: the server reaches <paramref name="memory"/> with DMA_READ/DMA_WRITE, which we serve.</summary>
    public async Task DmaMapAsync(ulong iova, Memory<byte> memory, uint flags = DmaMapPayload.FlagRead | DmaMapPayload.FlagWrite, CancellationToken cancellationToken = default)
    {
        lock (_dmaLock)
            _dmaMemory.Add((iova, memory));
        try
        {
            var request = new DmaMapPayload(DmaMapPayload.Length, flags, 0, iova, (ulong)memory.Length).Encode();
            using var reply = await RequestAsync(VfioUserCommand.DmaMap, request, null, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (_dmaLock)
                _dmaMemory.RemoveAll(m => m.Iova == iova);
            throw;
        }
    }

    /// <summary>DMA_UNMAP of exactly one mapping, or all (<paramref name="all"/>, addr = size = 0).</summary>
    public async Task DmaUnmapAsync(ulong iova, ulong size, bool all = false, CancellationToken cancellationToken = default)
    {
        var request = new DmaUnmapPayload(DmaUnmapPayload.Length, all ? DmaUnmapPayload.FlagAll : 0, all ? 0 : iova, all ? 0 : size).Encode();
        using var reply = await RequestAsync(VfioUserCommand.DmaUnmap, request, null, cancellationToken).ConfigureAwait(false);
        lock (_dmaLock)
            _dmaMemory.RemoveAll(m => all || (m.Iova == iova && (ulong)m.Memory.Length == size));
    }

    /// <summary>DEVICE_RESET.</summary>
    public async Task ResetAsync(CancellationToken cancellationToken = default)
    {
        using var reply = await RequestAsync(VfioUserCommand.DeviceReset, ReadOnlyMemory<byte>.Empty, null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>DEVICE_FEATURE with a complete feature buffer (argsz + flags + data); returns the reply payload.</summary>
    public async Task<byte[]> FeatureAsync(ReadOnlyMemory<byte> request, CancellationToken cancellationToken = default)
    {
        using var reply = await RequestAsync(VfioUserCommand.DeviceFeature, request, null, cancellationToken).ConfigureAwait(false);
        if (reply.PayloadLength < VfioDeviceFeature.Size)
            VfioException.Throw(Errno.EPROTO, "DEVICE_FEATURE", $"the reply payload has {reply.PayloadLength} bytes, fewer than 8");
        return reply.Payload.ToArray();
    }

    internal static byte[] MigDataReadRequest(int size)
    {
        var request = new byte[MigDataPayload.Length];
        new MigDataPayload((uint)(MigDataPayload.Length + size), (uint)size).Encode(request);
        return request;
    }

    /// <summary>Reads the <c>size</c> bytes of a MIG_DATA_READ reply (ignoring the padding) into <paramref name="destination"/>.</summary>
    internal static int TakeMigData(VfioUserMessage reply, int requested, Span<byte> destination)
    {
        var head = MigDataPayload.Decode(reply.Payload, "MIG_DATA_READ reply");
        if (head.Size > (uint)requested || reply.PayloadLength < MigDataPayload.Length + (int)head.Size)
            VfioException.Throw(Errno.EPROTO, "MIG_DATA_READ", $"the reply claims {head.Size} bytes for a {requested}-byte request with {reply.PayloadLength - MigDataPayload.Length} present");
        reply.Payload.Slice(MigDataPayload.Length, (int)head.Size).CopyTo(destination);
        return (int)head.Size;
    }

    /// <summary>The head of a MIG_DATA_WRITE of <paramref name="count"/> bytes (the data follows it in the message).</summary>
    internal static byte[] MigDataWriteHead(int count)
    {
        var head = new byte[MigDataPayload.Length];
        new MigDataPayload((uint)(MigDataPayload.Length + count), (uint)count).Encode(head);
        return head;
    }

    internal static byte[] MigDataWriteRequest(ReadOnlySpan<byte> data)
    {
        var request = new byte[MigDataPayload.Length + data.Length];
        new MigDataPayload((uint)request.Length, (uint)data.Length).Encode(request);
        data.CopyTo(request.AsSpan(MigDataPayload.Length));
        return request;
    }
}
