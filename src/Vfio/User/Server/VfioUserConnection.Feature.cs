using System.Buffers;
using System.Buffers.Binary;
using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;
using Vfio.User.Protocol;

namespace Vfio.User.Server;

// DEVICE_FEATURE (kernel vfio_check_feature rules, vfio-user data layouts) and MIG_DATA_READ/WRITE.
public sealed partial class VfioUserConnection
{
    private const uint OpBits = (uint)(VfioDeviceFeatureFlags.Get | VfioDeviceFeatureFlags.Set | VfioDeviceFeatureFlags.Probe);

    private OutgoingReply HandleFeature(ReadOnlySpan<byte> payload)
    {
        const string op = "DEVICE_FEATURE";
        if (payload.Length < VfioDeviceFeature.Size)
            VfioException.Throw(Errno.EINVAL, op, $"payload of {payload.Length} bytes is shorter than 8");
        var head = VfioDeviceFeature.Decode(payload);
        var data = payload[VfioDeviceFeature.Size..];
        uint ops = head.Flags & OpBits;
        bool get = (ops & (uint)VfioDeviceFeatureFlags.Get) != 0, set = (ops & (uint)VfioDeviceFeatureFlags.Set) != 0, probe = (ops & (uint)VfioDeviceFeatureFlags.Probe) != 0;
        // Core checks (kernel vfio_ioctl_device_feature).
        if (head.Argsz < VfioDeviceFeature.Size)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {head.Argsz} is smaller than 8");
        if ((head.Flags & ~((uint)VfioDeviceFeatureFlags.Mask | OpBits)) != 0)
            VfioException.Throw(Errno.EINVAL, op, $"unknown flag bits 0x{head.Flags & ~((uint)VfioDeviceFeatureFlags.Mask | OpBits):x}");
        if (!probe && get == set)
            VfioException.Throw(Errno.EINVAL, op, get ? "GET and SET together without PROBE" : "neither GET nor SET (nor PROBE)");

        var feature = head.FeatureId;
        var (supported, minsz) = feature switch
        {
            VfioDeviceFeatureId.Migration => (VfioDeviceFeatureFlags.Get, VfioDeviceFeatureMigration.Size),
            VfioDeviceFeatureId.MigDeviceState => (VfioDeviceFeatureFlags.Get | VfioDeviceFeatureFlags.Set, VfioDeviceFeatureMigState.Size),
            VfioDeviceFeatureId.DmaLoggingStart => (VfioDeviceFeatureFlags.Set, 16),
            VfioDeviceFeatureId.DmaLoggingStop => (VfioDeviceFeatureFlags.Set, 0),
            VfioDeviceFeatureId.DmaLoggingReport => (VfioDeviceFeatureFlags.Get, 24),
            VfioDeviceFeatureId.MigDataSize => (VfioDeviceFeatureFlags.Get, VfioDeviceFeatureMigDataSize.Size),
            _ => (VfioDeviceFeatureFlags.None, 0),
        };
        if (supported == VfioDeviceFeatureFlags.None)
            VfioException.Throw(Errno.ENOTTY, op, $"feature {(ushort)feature} is not supported");
        bool logging = feature is VfioDeviceFeatureId.DmaLoggingStart or VfioDeviceFeatureId.DmaLoggingStop or VfioDeviceFeatureId.DmaLoggingReport;
        if (logging && !_device.Migration.SupportsDmaLogging)
            VfioException.Throw(Errno.ENOTTY, op, "the device has no DMA logging");
        // vfio_check_feature: requested ops ⊆ supported; PROBE answers now; then argsz ≥ minsz.
        if ((ops & ~(uint)(supported | VfioDeviceFeatureFlags.Probe)) != 0)
            VfioException.Throw(Errno.EINVAL, op, $"feature {feature} does not support {(VfioDeviceFeatureFlags)(ops & ~(uint)supported)}");
        if (probe)
        {
            if (head.Argsz < payload.Length)
                VfioException.Throw(Errno.EINVAL, op, $"argsz {head.Argsz} cannot hold the {payload.Length}-byte echo");
            return OutgoingReply.Ok(payload);
        }
        if (head.Argsz - VfioDeviceFeature.Size < (uint)minsz)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {head.Argsz} leaves less than the {minsz} bytes {feature} needs");

        var m = _device.Migration;
        switch (feature)
        {
            case VfioDeviceFeatureId.Migration:
            {
                var reply = new byte[16];
                new VfioDeviceFeature(16, head.Flags).Encode(reply);
                new VfioDeviceFeatureMigration((ulong)m.Capabilities).Encode(reply.AsSpan(8));
                return OutgoingReply.Ok(reply);
            }
            case VfioDeviceFeatureId.MigDataSize:
            {
                var reply = new byte[16];
                new VfioDeviceFeature(16, head.Flags).Encode(reply);
                new VfioDeviceFeatureMigDataSize(m.GetStopCopySize()).Encode(reply.AsSpan(8));
                return OutgoingReply.Ok(reply);
            }
            case VfioDeviceFeatureId.MigDeviceState when get:
            {
                var reply = new byte[16];
                new VfioDeviceFeature(16, head.Flags).Encode(reply);
                new VfioDeviceFeatureMigState((uint)m.State, 0).Encode(reply.AsSpan(8));
                return OutgoingReply.Ok(reply);
            }
            case VfioDeviceFeatureId.MigDeviceState:
            {
                if (data.Length < VfioDeviceFeatureMigState.Size)
                    VfioException.Throw(Errno.EINVAL, op, $"SET MIG_DEVICE_STATE carries {data.Length} data bytes, 8 needed");
                if (head.Argsz < payload.Length)
                    VfioException.Throw(Errno.EINVAL, op, $"argsz {head.Argsz} cannot hold the {payload.Length}-byte echo");
                uint state = BinaryPrimitives.ReadUInt32LittleEndian(data);
                if (state >= MigrationStateMachine.StateCount)
                    VfioException.Throw(Errno.EINVAL, op, $"device_state {state} is not a state (0..7)");
                m.SetState((VfioMigrationState)state);
                // Echo byte-for-byte, including the caller's data_fd (libvfio-user; samples/client compares).
                return OutgoingReply.Ok(payload);
            }
            case VfioDeviceFeatureId.DmaLoggingStart:
                return HandleLoggingStart(head, payload, data);
            case VfioDeviceFeatureId.DmaLoggingStop:
                m.StopDmaLogging();
                return OutgoingReply.Ok(payload[..Math.Min(payload.Length, (int)Math.Min(head.Argsz, (uint)payload.Length))]);
            default:
                return HandleLoggingReport(head, payload, data);
        }
    }

    private OutgoingReply HandleLoggingStart(VfioDeviceFeature head, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> data)
    {
        const string op = "DMA_LOGGING_START";
        if (data.Length < 16)
            VfioException.Throw(Errno.EINVAL, op, $"{data.Length} data bytes; 16 needed");
        ulong pageSize = BinaryPrimitives.ReadUInt64LittleEndian(data);
        uint numRanges = BinaryPrimitives.ReadUInt32LittleEndian(data[8..]);
        if (pageSize == 0)
            VfioException.Throw(Errno.EINVAL, op, "page_size is 0");
        if (numRanges > ProtocolLimits.MaxDmaLoggingRanges)
            VfioException.Throw(Errno.E2BIG, op, $"{numRanges} ranges exceed {ProtocolLimits.MaxDmaLoggingRanges}");
        if ((ulong)data.Length < 16 + (ulong)numRanges * 16)
            VfioException.Throw(Errno.EINVAL, op, $"{numRanges} ranges announced, {(data.Length - 16) / 16} present");
        var ranges = new List<VfioDmaLoggingRange>((int)numRanges);
        for (int i = 0; i < numRanges; i++)
            ranges.Add(VfioDmaLoggingRange.Decode(data.Slice(16 + (i * 16), 16)));
        if (ranges.Count == 0)
        {
            // num_ranges 0 = "everything" in vfio-user (libvfio-user); the kernel-style engine needs a range.
            ulong top = (1UL << 63) & ~(pageSize - 1);
            ranges.Add(new VfioDmaLoggingRange(0, top));
        }
        ulong chosen = _device.Migration.StartDmaLogging(pageSize, ranges);
        var reply = payload.ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(VfioDeviceFeature.Size), chosen);
        return OutgoingReply.Ok(reply.AsSpan(0, (int)Math.Min(head.Argsz, (uint)reply.Length)));
    }

    private OutgoingReply HandleLoggingReport(VfioDeviceFeature head, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> data)
    {
        const string op = "DMA_LOGGING_REPORT";
        if (data.Length < 24)
            VfioException.Throw(Errno.EINVAL, op, $"{data.Length} data bytes; 24 needed");
        ulong iova = BinaryPrimitives.ReadUInt64LittleEndian(data), length = BinaryPrimitives.ReadUInt64LittleEndian(data[8..]), pageSize = BinaryPrimitives.ReadUInt64LittleEndian(data[16..]);
        if (pageSize == 0 || (pageSize & (pageSize - 1)) != 0)
            VfioException.Throw(Errno.EINVAL, op, $"page_size 0x{pageSize:x} is not a power of two");
        if (length < pageSize)
            VfioException.Throw(Errno.EINVAL, op, $"length 0x{length:x} is below page_size 0x{pageSize:x}");
        ulong words = VfioDmaLoggingReport.BitmapWords(length, pageSize);
        if (words * 8 > (ulong)ProtocolLimits.MaxDataTransferBytes)
            VfioException.Throw(Errno.E2BIG, op, $"a {words * 8}-byte bitmap exceeds {ProtocolLimits.MaxDataTransferBytes}; report smaller ranges");
        int total = VfioDeviceFeature.Size + 24 + (int)(words * 8);
        if (head.Argsz < total)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {head.Argsz} cannot hold the {total}-byte reply with bitmap");
        var bitmap = new ulong[words];
        _device.Migration.ReportDmaLogging(iova, length, pageSize, bitmap);
        var reply = new byte[total];
        new VfioDeviceFeature((uint)total, head.Flags).Encode(reply);
        payload.Slice(VfioDeviceFeature.Size, 24).CopyTo(reply.AsSpan(VfioDeviceFeature.Size));
        for (int i = 0; i < bitmap.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(32 + (i * 8)), bitmap[i]);
        return OutgoingReply.Ok(reply);
    }

    private OutgoingReply HandleMigDataRead(ReadOnlySpan<byte> payload)
    {
        const string op = "MIG_DATA_READ";
        var r = MigDataPayload.Decode(payload, op);
        if (r.Size > (uint)_peerMaxDataTransfer)
            VfioException.Throw(Errno.EINVAL, op, $"size {r.Size} exceeds the client's max_data_xfer_size {_peerMaxDataTransfer}");
        if (r.Argsz < MigDataPayload.Length + (ulong)r.Size)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {r.Argsz} < 8 + size {r.Size}");
        var m = _device.Migration;
        var state = m.State;
        if (!MigrationStateMachine.IsSaving(state))
            VfioException.Throw(Errno.EINVAL, op, $"the device is in {MigrationStateMachine.Name(state)}, not PRE_COPY or STOP_COPY");
        var session = m.CurrentSession;
        if (session is null || session.Kind != DataSessionKind.Saving || !session.IsActive)
            VfioException.Throw(Errno.EINVAL, op, "no saving session is open");
        // A stopped device that holds its stream in memory hands it over: the reply is sent from that memory.
        if (state == VfioMigrationState.StopCopy && session.TryTakeStopCopy((int)r.Size) is { } taken)
        {
            if (taken.Length == (int)r.Size)
            {
                var head = new byte[VfioUserHeader.Size + MigDataPayload.Length];
                new MigDataPayload((uint)(MigDataPayload.Length + taken.Length), (uint)taken.Length).Encode(head.AsSpan(VfioUserHeader.Size));
                return OutgoingReply.InPlace(head, head.Length, pooled: false, tail: taken);
            }
            return PaddedMigDataReply((int)r.Size, taken.Span, session);
        }
        return PaddedMigDataReply((int)r.Size, default, session);
    }

    // Reply padded to 8 + requested bytes (libvfio-user; samples/client requires it); size tells the truth. It starts
    // with what the device already handed over (first) and fills up by reading until full or the end.
    private static OutgoingReply PaddedMigDataReply(int size, ReadOnlySpan<byte> first, DataSession session)
    {
        int length = VfioUserHeader.Size + MigDataPayload.Length + size;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        int filled = 0;
        try
        {
            var dst = buffer.AsSpan(VfioUserHeader.Size + MigDataPayload.Length, size);
            first.CopyTo(dst);
            filled = first.Length;
            // Fill completely unless the device is at (temporary) end: a short reply means "no more".
            while (filled < dst.Length)
            {
                int n;
                try
                {
                    n = session.Read(dst[filled..]);
                }
                catch (VfioException ex) when (ex.Errno == Errno.ENOMSG)
                {
                    break;
                }
                if (n == 0)
                    break;
                filled += n;
            }
            dst[filled..].Clear();
            new MigDataPayload((uint)(MigDataPayload.Length + filled), (uint)filled).Encode(buffer.AsSpan(VfioUserHeader.Size));
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
        return OutgoingReply.InPlace(buffer, length, pooled: true);
    }

    private OutgoingReply HandleMigDataWrite(ReadOnlySpan<byte> payload)
    {
        const string op = "MIG_DATA_WRITE";
        var r = MigDataPayload.Decode(payload, op);
        if (r.Size > (uint)_options.MaxDataTransferBytes)
            VfioException.Throw(Errno.EINVAL, op, $"size {r.Size} exceeds max_data_xfer_size {_options.MaxDataTransferBytes}");
        if (r.Argsz < MigDataPayload.Length + (ulong)r.Size)
            VfioException.Throw(Errno.EINVAL, op, $"argsz {r.Argsz} < 8 + size {r.Size}");
        if ((ulong)payload.Length < MigDataPayload.Length + (ulong)r.Size)
            VfioException.Throw(Errno.EINVAL, op, $"size {r.Size} but only {payload.Length - MigDataPayload.Length} data bytes");
        var m = _device.Migration;
        if (m.State != VfioMigrationState.Resuming)
            VfioException.Throw(Errno.EINVAL, op, $"the device is in {MigrationStateMachine.Name(m.State)}, not RESUMING");
        var session = m.CurrentSession;
        if (session is null || session.Kind != DataSessionKind.Resuming || !session.IsActive)
            VfioException.Throw(Errno.EINVAL, op, "no resuming session is open");
        session.Write(payload.Slice(MigDataPayload.Length, (int)r.Size));
        return OutgoingReply.Empty;
    }
}
