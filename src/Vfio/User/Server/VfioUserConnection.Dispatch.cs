using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Interop;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

// Command execution: validation in libvfio-user's order (spec §5–§6), one errno per failure.
public sealed partial class VfioUserConnection
{
    /// <summary>Executes one complete received message and builds its reply. Never throws.</summary>
    internal OutgoingReply Dispatch(VfioUserMessage message)
    {
        var header = message.Header;
        try
        {
            return DispatchCore(message);
        }
        catch (VfioException ex)
        {
            VfioUserLog.CommandFailed(_logger, header.Command, header.MessageId, ex.Message);
            bool fatal = !_negotiated; // any failure before (or of) VERSION closes the connection (libvfio-user)
            return OutgoingReply.Fail(ex.Errno, closeAfter: fatal);
        }
#pragma warning disable CA1031 // a handler bug must not take the server down: answer EIO and keep serving
        catch (Exception ex)
#pragma warning restore CA1031
        {
            VfioUserLog.HandlerCrashed(_logger, header.Command.ToString(), header.MessageId, ex);
            return OutgoingReply.Fail(Errno.EIO);
        }
    }

    private OutgoingReply DispatchCore(VfioUserMessage message)
    {
        var header = message.Header;
        var payload = message.Payload;
        string? flagProblem = VfioUserFrame.CheckFlags(header);
        if (flagProblem is not null)
            VfioException.Throw(Errno.EINVAL, header.Command.ToString(), flagProblem);
        if (!header.IsCommand)
            VfioException.Throw(Errno.EINVAL, header.Command.ToString(), "a reply arrived that answers no request of ours");
        if (!_negotiated)
        {
            if (header.Command != VfioUserCommand.Version)
                VfioException.Throw(Errno.EINVAL, header.Command.ToString(), "the first message must be VERSION");
            return HandleVersion(message);
        }
        if (header.Command == VfioUserCommand.Version)
            VfioException.Throw(Errno.EINVAL, "VERSION", "the version was already negotiated");
        if (payload.IsEmpty && header.Command != VfioUserCommand.DeviceReset)
            VfioException.Throw(Errno.EINVAL, header.Command.ToString(), "the command has no payload");
        // Fds only belong on DMA_MAP and SET_IRQS; anything else with fds is refused (and the fds closed).
        if (message.Fds.Count > 0 && header.Command is not (VfioUserCommand.DmaMap or VfioUserCommand.DeviceSetIrqs))
            VfioException.Throw(Errno.EINVAL, header.Command.ToString(), $"{message.Fds.Count} unexpected file descriptors");
        if (!IsAllowedInState(header.Command))
            VfioException.Throw(Errno.EINVAL, header.Command.ToString(), $"not allowed while the device is in {Vfio.Migration.MigrationStateMachine.Name(_device.Migration.State)}");

        return header.Command switch
        {
            VfioUserCommand.DmaMap => HandleDmaMap(message),
            VfioUserCommand.DmaUnmap => HandleDmaUnmap(payload),
            VfioUserCommand.DeviceGetInfo => HandleDeviceInfo(payload),
            VfioUserCommand.DeviceGetRegionInfo => HandleRegionInfo(payload),
            VfioUserCommand.DeviceGetRegionIoFds => HandleRegionIoFds(payload),
            VfioUserCommand.DeviceGetIrqInfo => HandleIrqInfo(payload),
            VfioUserCommand.DeviceSetIrqs => HandleSetIrqs(message),
            VfioUserCommand.RegionRead => HandleRegionRead(payload),
            VfioUserCommand.RegionWrite => HandleRegionWrite(payload),
            VfioUserCommand.DeviceReset => HandleReset(),
            VfioUserCommand.DeviceFeature => HandleFeature(payload),
            VfioUserCommand.MigDataRead => HandleMigDataRead(payload),
            VfioUserCommand.MigDataWrite => HandleMigDataWrite(payload),
            _ => throw new VfioException(Errno.EINVAL, $"command {(ushort)header.Command}", "unknown or unsupported command"),
        };
    }

    private OutgoingReply HandleVersion(VfioUserMessage message)
    {
        const string op = "VERSION";
        if (message.Fds.Count > 0)
            VfioException.Throw(Errno.EINVAL, op, "a VERSION request must not carry file descriptors");
        var request = VersionPayload.Decode(message.Payload);
        if (request.Major != VfioUserSpec.VersionMajor)
            VfioException.Throw(Errno.EINVAL, op, $"major version {request.Major} is not {VfioUserSpec.VersionMajor}");
        var caps = request.Capabilities ?? new VersionCapabilities();
        long maxFds = caps.MaxMessageFds ?? VfioUserSpec.DefaultMaxMessageFds;
        if (maxFds is < 0 or > ProtocolLimits.MaxPeerMessageFds)
            VfioException.Throw(Errno.EINVAL, op, $"max_msg_fds {maxFds} is outside 0..{ProtocolLimits.MaxPeerMessageFds}");
        long maxXfer = caps.MaxDataTransferSize ?? VfioUserSpec.DefaultMaxDataTransferBytes;
        if (maxXfer is <= 0 or > ProtocolLimits.MaxPeerDataTransferBytes)
            VfioException.Throw(Errno.EINVAL, op, $"max_data_xfer_size {maxXfer} is outside 1..{ProtocolLimits.MaxPeerDataTransferBytes}");
        if (caps.Migration is { } mig && mig.PageSize is { } pg && pg != VfioUserSpec.MigrationPageBytes)
            VfioException.Throw(Errno.EINVAL, op, $"migration.pgsize {pg} is not {VfioUserSpec.MigrationPageBytes}");
        if (caps.TwinSocket is { FdIndex: not null } && caps.TwinSocket.Supported != true)
            VfioException.Throw(Errno.EINVAL, op, "twin_socket.fd_index without supported = true");
        _peerMaxFds = (int)maxFds;
        _peerMaxDataTransfer = (int)maxXfer;
        _negotiated = true;
        // twin_socket only when asked (spec §4.2, §4.3: samples/client crashes on an unasked one) and only when
        // the client can receive the fd: our DMA_READ/DMA_WRITE then go over a socketpair of their own.
        var twinPeerEnd = caps.TwinSocket?.Supported == true && maxFds > 0 && _socket.CarriesFds ? OpenTwinSocket() : null;
        var reply = new VersionPayload(VfioUserSpec.VersionMajor, Math.Min(request.Minor, VfioUserSpec.VersionMinor), new VersionCapabilities
        {
            MaxMessageFds = _options.MaxMessageFds,
            MaxDataTransferSize = _options.MaxDataTransferBytes,
            Migration = new MigrationCapability { PageSize = VfioUserSpec.MigrationPageBytes },
            TwinSocket = twinPeerEnd is null ? null : new TwinSocketCapability { Supported = true, FdIndex = 0 },
        });
        return OutgoingReply.Ok(reply.Encode(), twinPeerEnd is null ? null : [twinPeerEnd]);
    }

    private OutgoingReply HandleDmaMap(VfioUserMessage message)
    {
        if (message.Fds.Count > 1)
            VfioException.Throw(Errno.EINVAL, "DMA_MAP", $"{message.Fds.Count} fds; at most 1");
        var request = DmaMapPayload.Decode(message.Payload);
        Dma.Map(request, message.Fds.Count == 1 ? message.Fds.Take(0) : null);
        return OutgoingReply.Empty;
    }

    private OutgoingReply HandleDmaUnmap(ReadOnlySpan<byte> payload)
    {
        var request = DmaUnmapPayload.Decode(payload);
        if (request.Argsz < DmaUnmapPayload.Length)
            VfioException.Throw(Errno.EINVAL, "DMA_UNMAP", $"argsz {request.Argsz} is smaller than {DmaUnmapPayload.Length}");
        Dma.Unmap(request);
        return OutgoingReply.Ok(payload[..DmaUnmapPayload.Length]);
    }

    private OutgoingReply HandleDeviceInfo(ReadOnlySpan<byte> payload)
    {
        var request = DeviceInfoPayload.Decode(payload);
        if (request.Argsz < DeviceInfoPayload.Length)
            VfioException.Throw(Errno.EINVAL, "DEVICE_GET_INFO", $"argsz {request.Argsz} is smaller than {DeviceInfoPayload.Length}");
        var reply = new DeviceInfoPayload(DeviceInfoPayload.Length, DeviceInfoPayload.FlagReset | DeviceInfoPayload.FlagPci, _device.RegionCount, _device.IrqCount);
        return OutgoingReply.Ok(reply.Encode());
    }

    private OutgoingReply HandleRegionInfo(ReadOnlySpan<byte> payload)
    {
        var request = RegionInfoPayload.Decode(payload);
        if (request.Argsz < RegionInfoPayload.Length)
            VfioException.Throw(Errno.EINVAL, "DEVICE_GET_REGION_INFO", $"argsz {request.Argsz} is smaller than {RegionInfoPayload.Length}");
        if (request.Index >= _device.RegionCount)
            VfioException.Throw(Errno.EINVAL, "DEVICE_GET_REGION_INFO", $"region {request.Index} does not exist ({_device.RegionCount} regions)");
        var region = _device.GetRegion(request.Index);
        uint flags = region is null ? 0 : (region.Read is null ? 0 : RegionInfoPayload.FlagRead) | (region.Write is null ? 0 : RegionInfoPayload.FlagWrite);
        // No region is mmappable: no caps, no fd — the reply is exactly 32 bytes (samples/client checks that).
        var reply = new RegionInfoPayload(RegionInfoPayload.Length, flags, request.Index, 0, region?.Size ?? 0, 0);
        return OutgoingReply.Ok(reply.Encode());
    }

    private OutgoingReply HandleRegionIoFds(ReadOnlySpan<byte> payload)
    {
        const string op = "DEVICE_GET_REGION_IO_FDS";
        var (argsz, flags, index, count) = Codec.ReadU32x4(payload, op);
        if (argsz < 16 || argsz > ProtocolLimits.MaxDataTransferBytes)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {argsz} is outside 16..{ProtocolLimits.MaxDataTransferBytes}");
        if (flags != 0 || count != 0)
            VfioException.Throw(Errno.EINVAL, op, "flags and count must be 0");
        if (index >= _device.RegionCount || _device.GetRegion(index) is null)
            VfioException.Throw(Errno.EINVAL, op, $"region {index} does not exist or has no access");
        return OutgoingReply.Ok(Codec.U32x4(16, 0, index, 0));
    }

    private OutgoingReply HandleIrqInfo(ReadOnlySpan<byte> payload)
    {
        var request = IrqInfoPayload.Decode(payload);
        if (request.Argsz < IrqInfoPayload.Length)
            VfioException.Throw(Errno.EINVAL, "DEVICE_GET_IRQ_INFO", $"argsz {request.Argsz} is smaller than 16");
        if (request.Index >= _device.IrqCount)
            VfioException.Throw(Errno.EINVAL, "DEVICE_GET_IRQ_INFO", $"IRQ index {request.Index} does not exist ({_device.IrqCount} indexes)");
        return OutgoingReply.Ok(new IrqInfoPayload(IrqInfoPayload.Length, IrqInfoPayload.FlagEventFd, request.Index, _device.GetIrqCount(request.Index)).Encode());
    }

    private OutgoingReply HandleSetIrqs(VfioUserMessage message)
    {
        const string op = "DEVICE_SET_IRQS";
        var payload = message.Payload;
        var r = SetIrqsPayload.Decode(payload);
        uint data = r.Flags & SetIrqsPayload.DataMask, action = r.Flags & SetIrqsPayload.ActionMaskBits;
        if ((r.Flags & ~(SetIrqsPayload.DataMask | SetIrqsPayload.ActionMaskBits)) != 0)
            VfioException.Throw(Errno.EINVAL, op, $"unknown flag bits 0x{r.Flags:x}");
        if (r.Argsz < SetIrqsPayload.Length)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {r.Argsz} is smaller than 20");
        if (data == SetIrqsPayload.DataBool && payload.Length - SetIrqsPayload.Length != r.Count)
            VfioException.Throw(Errno.EINVAL, op, $"DATA_BOOL with {payload.Length - SetIrqsPayload.Length} bools for count {r.Count}");
        if (r.Index >= _device.IrqCount)
            VfioException.Throw(Errno.EINVAL, op, $"IRQ index {r.Index} does not exist");
        if (!IsSingleBit(action) || !IsSingleBit(data))
            VfioException.Throw(Errno.EINVAL, op, "exactly one ACTION and one DATA type are required");
        uint vectors = _device.GetIrqCount(r.Index);
        if (r.Count > ProtocolLimits.MaxIrqVectors)
            VfioException.Throw(Errno.EINVAL, op, $"count {r.Count} exceeds {ProtocolLimits.MaxIrqVectors}");
        if (r.Count == 0 ? r.Start != 0 : (r.Start >= vectors || r.Start + r.Count > vectors))
            VfioException.Throw(Errno.EINVAL, op, $"vectors {r.Start}+{r.Count} are outside the {vectors} of index {r.Index}");
        if (r.Index >= 3 && (action != SetIrqsPayload.ActionTrigger || r.Count > 1))
            VfioException.Throw(Errno.EINVAL, op, "ERR/REQ take only TRIGGER with count ≤ 1");
        if (r.Count == 0 && !(action == SetIrqsPayload.ActionTrigger && data == SetIrqsPayload.DataNone))
            VfioException.Throw(Errno.EINVAL, op, "count 0 is only allowed with TRIGGER|DATA_NONE");
        if (message.Fds.Count > 0 && data != SetIrqsPayload.DataEventFd)
            VfioException.Throw(Errno.EINVAL, op, "file descriptors with a non-EVENTFD data type");
        if (data == SetIrqsPayload.DataEventFd && message.Fds.Count > 0 && message.Fds.Count != r.Count)
            VfioException.Throw(Errno.EINVAL, op, $"{message.Fds.Count} eventfds for count {r.Count}");

        var slots = _irqFds[r.Index];
        if (action != SetIrqsPayload.ActionTrigger)
            return OutgoingReply.Empty; // MASK/UNMASK: nothing to do for our devices
        if (r.Count == 0)
        {
            for (int i = 0; i < slots.Length; i++)
            {
                slots[i]?.Dispose();
                slots[i] = null;
            }
            return OutgoingReply.Empty;
        }
        for (uint i = 0; i < r.Count; i++)
        {
            uint v = r.Start + i;
            switch (data)
            {
                case SetIrqsPayload.DataEventFd:
                    slots[v]?.Dispose();
                    slots[v] = message.Fds.Count > 0 ? message.Fds.Take((int)i) : null;
                    break;
                case SetIrqsPayload.DataNone:
                    TriggerIrq(r.Index, v);
                    break;
                case SetIrqsPayload.DataBool:
                    if (payload[SetIrqsPayload.Length + (int)i] != 0)
                        TriggerIrq(r.Index, v);
                    break;
            }
        }
        return OutgoingReply.Empty;
    }

    private static bool IsSingleBit(uint v) => v != 0 && (v & (v - 1)) == 0;

    private VfioUserRegion CheckRegionAccess(RegionAccessPayload r, string op)
    {
        if (r.Count > ProtocolLimits.MaxDataTransferBytes || r.Count > _options.MaxDataTransferBytes)
            VfioException.Throw(Errno.EINVAL, op, $"count {r.Count} exceeds max_data_xfer_size {_options.MaxDataTransferBytes}");
        if (r.Region >= _device.RegionCount)
            VfioException.Throw(Errno.EINVAL, op, $"region {r.Region} does not exist ({_device.RegionCount} regions)");
        var region = _device.GetRegion(r.Region);
        ulong size = region?.Size ?? 0;
        if (r.Offset > size || r.Count > size - r.Offset)
            VfioException.Throw(Errno.EINVAL, op, $"0x{r.Offset:x}+{r.Count} is outside region {r.Region} of {size} bytes");
        return region ?? throw new VfioException(Errno.EINVAL, op, $"region {r.Region} is empty");
    }

    private OutgoingReply HandleRegionRead(ReadOnlySpan<byte> payload)
    {
        const string op = "REGION_READ";
        var r = RegionAccessPayload.Decode(payload, op);
        if (r.Count == 0 && r.Region < _device.RegionCount)
            return OutgoingReply.Empty; // libvfio-user: empty payload, not 16 bytes
        var region = CheckRegionAccess(r, op);
        if (region.Read is null)
            VfioException.Throw(Errno.EINVAL, op, $"region {r.Region} is not readable");
        int length = VfioUserHeader.Size + RegionAccessPayload.Length + (int)r.Count;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            r.Encode(buffer.AsSpan(VfioUserHeader.Size));
            region.Read(r.Offset, buffer.AsSpan(VfioUserHeader.Size + RegionAccessPayload.Length, (int)r.Count));
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
        return OutgoingReply.InPlace(buffer, length, pooled: true);
    }

    private OutgoingReply HandleRegionWrite(ReadOnlySpan<byte> payload)
    {
        const string op = "REGION_WRITE";
        var r = RegionAccessPayload.Decode(payload, op);
        if (r.Count > ProtocolLimits.MaxDataTransferBytes)
            VfioException.Throw(Errno.EINVAL, op, $"count {r.Count} exceeds 1 MiB");
        if (payload.Length - RegionAccessPayload.Length != r.Count)
            VfioException.Throw(Errno.EINVAL, op, $"count {r.Count} but {payload.Length - RegionAccessPayload.Length} data bytes");
        if (r.Count == 0 && r.Region < _device.RegionCount)
            return OutgoingReply.Empty;
        var region = CheckRegionAccess(r, op);
        if (region.Write is null)
            VfioException.Throw(Errno.EINVAL, op, $"region {r.Region} is not writable");
        region.Write(r.Offset, payload.Slice(RegionAccessPayload.Length, (int)r.Count));
        return OutgoingReply.Ok(payload[..RegionAccessPayload.Length]);
    }

    private OutgoingReply HandleReset()
    {
        // Kernel VFIO_DEVICE_RESET semantics for the migration engine: RUNNING, sessions terminated
        // (libvfio-user ≥ PR #844 keeps the migration state instead; see docs/vfio-user.md).
        _device.Migration.Reset();
        return OutgoingReply.Empty;
    }
}
