using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Vfio.Migration;

namespace Vfio.Stream;

/// <summary>
/// Encoder and decoder of the migration stream (docs/stream-format.md). All integers are little-endian.
/// <code>
/// Preamble (20 bytes, once per stream)
///  0               8       10      12              16              20
/// +---------------+-------+-------+---------------+---------------+
/// | magic (8)     | ver   | devs  | max payload   | crc32c 0..15  |
/// +---------------+-------+-------+---------------+---------------+
///
/// Frame (16 + length + 4 bytes)
///  0   1   2       4               8               12              16
/// +---+---+-------+---------------+---------------+---------------+----------------+---------------+
/// |typ|flg| dev   | length (u32)  | sequence (u32)| crc32c 0..11  | payload[length]| crc32c 0..end |
/// +---+---+-------+---------------+---------------+---------------+----------------+---------------+
/// </code>
/// The header CRC lets a decoder reject a corrupted length before waiting for (or buffering) the payload;
/// the trailer CRC covers the 16 header bytes and the payload.
/// </summary>
internal static class MigrationFrameCodec
{
    /// <summary>Format version written and accepted.</summary>
    public const ushort Version = 2;

    /// <summary>Bytes of the stream preamble.</summary>
    public const int PreambleSize = 20;

    /// <summary>Bytes of a frame header.</summary>
    public const int FrameHeaderSize = 16;

    /// <summary>Bytes of a frame trailer (CRC-32C).</summary>
    public const int FrameTrailerSize = 4;

    /// <summary>Default largest payload: 1 MiB, the usual data buffer size.</summary>
    public const uint DefaultMaxPayload = 1 << 20;

    /// <summary>The largest payload any preamble may declare (16 MiB); bounds what a decoder ever buffers.</summary>
    public const uint HardMaxPayload = 16 << 20;

    /// <summary>The largest UTF-8 message in a status payload.</summary>
    public const int MaxMessageBytes = 1024;

    /// <summary>The largest UTF-8 device name in a setup payload.</summary>
    public const int MaxNameBytes = 255;

    /// <summary>Bytes of a setup payload before the name: caps u64, stop-copy size u64, plan u32, name length u16.</summary>
    public const int SetupFixedSize = 22;

    /// <summary>Bytes of a Begin payload: the migration id.</summary>
    public const int MigrationIdSize = 16;

    /// <summary>Bytes of a status payload before the message: errno i32, phase u8, reserved u8, message length u16.</summary>
    public const int StatusFixedSize = 8;

    private const string Decode = "decode migration stream";
    private static readonly ulong s_forwardMagic = BinaryPrimitives.ReadUInt64LittleEndian("VFMIGFWD"u8);
    private static readonly ulong s_returnMagic = BinaryPrimitives.ReadUInt64LittleEndian("VFMIGRET"u8);

    private static ulong MagicOf(MigrationStreamKind kind) => kind == MigrationStreamKind.Forward ? s_forwardMagic : s_returnMagic;

    /// <summary>Total bytes of a frame with <paramref name="payloadLength"/> payload bytes.</summary>
    public static int FrameSize(int payloadLength) => FrameHeaderSize + payloadLength + FrameTrailerSize;

    /// <summary>Writes a preamble into the first <see cref="PreambleSize"/> bytes of <paramref name="destination"/>.</summary>
    public static void WritePreamble(Span<byte> destination, in MigrationStreamPreamble preamble)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, MagicOf(preamble.Kind));
        BinaryPrimitives.WriteUInt16LittleEndian(destination[8..], preamble.Version);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[10..], preamble.DeviceCount);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], preamble.MaxPayload);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[16..], Crc32C.Compute(destination[..16]));
    }

    /// <summary>
    /// Reads the preamble of a <paramref name="kind"/> stream. Returns false when more bytes are needed;
    /// on success <paramref name="buffer"/> is advanced past it.
    /// </summary>
    /// <exception cref="VfioException">EPROTO (bad magic, version, device count), EBADMSG (CRC), EMSGSIZE (declared payload limit above <paramref name="maxPayloadLimit"/>).</exception>
    public static bool TryReadPreamble(ref ReadOnlySequence<byte> buffer, MigrationStreamKind kind, uint maxPayloadLimit, out MigrationStreamPreamble preamble)
    {
        preamble = default;
        if (buffer.Length < PreambleSize)
            return false;
        Span<byte> p = stackalloc byte[PreambleSize];
        buffer.Slice(0, PreambleSize).CopyTo(p);
        ulong magic = BinaryPrimitives.ReadUInt64LittleEndian(p);
        if (magic != MagicOf(kind))
        {
            var other = kind == MigrationStreamKind.Forward ? MigrationStreamKind.Return : MigrationStreamKind.Forward;
            string why = magic == MagicOf(other)
                ? $"this is a {other.ToString().ToLowerInvariant()} stream, a {kind.ToString().ToLowerInvariant()} stream was expected"
                : $"not a migration stream (magic 0x{magic:x16})";
            throw new VfioException(Errno.EPROTO, Decode, why);
        }
        if (Crc32C.Compute(p[..16]) != BinaryPrimitives.ReadUInt32LittleEndian(p[16..]))
            throw new VfioException(Errno.EBADMSG, Decode, "the stream preamble is corrupt (CRC-32C mismatch)");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(p[8..]);
        if (version != Version)
            throw new VfioException(Errno.EPROTO, Decode, $"unsupported stream version {version} (this build reads version {Version})");
        ushort devices = BinaryPrimitives.ReadUInt16LittleEndian(p[10..]);
        if (devices == 0 || devices == MigrationFrame.StreamLevel)
            throw new VfioException(Errno.EPROTO, Decode, $"the preamble declares {devices} devices (1 to 65534 allowed)");
        uint maxPayload = BinaryPrimitives.ReadUInt32LittleEndian(p[12..]);
        if (maxPayload > maxPayloadLimit || maxPayload > HardMaxPayload)
            throw new VfioException(Errno.EMSGSIZE, Decode, $"the preamble declares frames of up to {maxPayload} bytes, above this reader's limit of {Math.Min(maxPayloadLimit, HardMaxPayload)}");
        if (maxPayload < MaxMessageBytes + StatusFixedSize)
            throw new VfioException(Errno.EPROTO, Decode, $"the preamble declares frames of up to {maxPayload} bytes; at least {MaxMessageBytes + StatusFixedSize} are required");
        preamble = new MigrationStreamPreamble(kind, version, devices, maxPayload);
        buffer = buffer.Slice(PreambleSize);
        return true;
    }

    /// <summary>
    /// Writes the 16-byte header and the trailer of a frame whose payload already sits at
    /// <c>frame[FrameHeaderSize..]</c>; returns the frame's total size.
    /// </summary>
    /// <remarks>
    /// <paramref name="payloadChecked"/> false (a data frame over an authenticating transport, see
    /// <see cref="IAuthenticatedPipe"/>) sets <see cref="FlagPayloadUnchecked"/> and writes a zero trailer instead of
    /// the frame CRC; the header CRC is always written.
    /// </remarks>
    public static int SealFrame(Span<byte> frame, MigrationFrameType type, ushort device, uint sequence, int payloadLength, bool payloadChecked = true)
    {
        bool unchecked_ = !payloadChecked && IsData(type);
        WriteHeader(frame, type, unchecked_ ? FlagPayloadUnchecked : (byte)0, device, sequence, payloadLength);
        int body = FrameHeaderSize + payloadLength;
        BinaryPrimitives.WriteUInt32LittleEndian(frame[body..], unchecked_ ? 0u : Crc32C.Compute(frame[..body]));
        return body + FrameTrailerSize;
    }

    /// <summary>
    /// Frame flag (PreCopyData and StopCopyData only): the trailer is zero and the payload has no CRC, because the
    /// transport authenticates every byte (<see cref="IAuthenticatedPipe"/>). A reader accepts it only from such a
    /// transport; the header CRC still covers the flag.
    /// </summary>
    public const byte FlagPayloadUnchecked = 0x01;

    /// <summary>
    /// Frame flag (PreCopyData and StopCopyData only): the payload is not in the stream; it travels beside it as a
    /// <see cref="Migration.DataChunk"/> of the length the header declares (<see cref="IChunkPipeWriter"/>). The frame
    /// is its header and a zero trailer. A reader accepts it only from a pipe that carries chunks (the engine's
    /// in-process pipe); from any other transport it is EPROTO.
    /// </summary>
    public const byte FlagPayloadChunk = 0x02;

    /// <summary>Writes the 16-byte header and zero trailer of a data frame whose payload is a chunk of <paramref name="payloadLength"/> bytes; returns the frame's size in the stream.</summary>
    public static int SealChunkFrame(Span<byte> frame, MigrationFrameType type, ushort device, uint sequence, int payloadLength)
    {
        if (!IsData(type))
            throw new ArgumentOutOfRangeException(nameof(type), type, "only data frames carry a chunk");
        WriteHeader(frame, type, FlagPayloadChunk, device, sequence, payloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[FrameHeaderSize..], 0u);
        return FrameHeaderSize + FrameTrailerSize;
    }

    private static void WriteHeader(Span<byte> frame, MigrationFrameType type, byte flags, ushort device, uint sequence, int payloadLength)
    {
        frame[0] = (byte)type;
        frame[1] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(frame[2..], device);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[4..], (uint)payloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[8..], sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[12..], Crc32C.Compute(frame[..12]));
    }

    // Device-data frames: the only ones large enough for their CRC to matter.
    private static bool IsData(MigrationFrameType type) => type is MigrationFrameType.PreCopyData or MigrationFrameType.StopCopyData;

    /// <summary>Writes a whole frame into <paramref name="destination"/>; returns its size.</summary>
    public static int WriteFrame(Span<byte> destination, MigrationFrameType type, ushort device, uint sequence, ReadOnlySpan<byte> payload)
    {
        payload.CopyTo(destination[FrameHeaderSize..]);
        return SealFrame(destination, type, device, sequence, payload.Length);
    }

    /// <summary>
    /// Decodes the next frame. Returns false when more bytes are needed (nothing is consumed); on success
    /// <paramref name="buffer"/> is advanced past the frame and the frame's payload is a slice of the input.
    /// The header is checked (CRC, flags, type, length against <paramref name="maxPayload"/>, sequence)
    /// before the payload is waited for, so a reader never buffers more than one bounded frame.
    /// </summary>
    /// <exception cref="VfioException">EBADMSG (CRC mismatch), EMSGSIZE (length above the limit), EPROTO (unknown type, flags, sequence gap, misplaced device index or payload size).</exception>
    /// <remarks>
    /// <paramref name="transportAuthenticates"/>: the bytes come from a transport that authenticates them
    /// (<see cref="IAuthenticatedPipe"/>), so a data frame may carry <see cref="FlagPayloadUnchecked"/>; from any
    /// other transport that flag is EPROTO. <paramref name="transportCarriesChunks"/>: the same for
    /// <see cref="FlagPayloadChunk"/>; such a frame is returned with <see cref="MigrationFrame.IsChunk"/> set and an empty
    /// payload, and the caller takes its chunk from the pipe.
    /// </remarks>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, uint maxPayload, uint expectedSequence, ushort deviceCount, out MigrationFrame frame, bool transportAuthenticates = false, bool transportCarriesChunks = false)
    {
        frame = default;
        if (buffer.Length < FrameHeaderSize)
            return false;
        Span<byte> h = stackalloc byte[FrameHeaderSize];
        buffer.Slice(0, FrameHeaderSize).CopyTo(h);
        if (Crc32C.Compute(h[..12]) != BinaryPrimitives.ReadUInt32LittleEndian(h[12..]))
            throw new VfioException(Errno.EBADMSG, Decode, $"the header of frame {expectedSequence} is corrupt (CRC-32C mismatch)");
        var type = (MigrationFrameType)h[0];
        ushort device = BinaryPrimitives.ReadUInt16LittleEndian(h[2..]);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(h[4..]);
        uint sequence = BinaryPrimitives.ReadUInt32LittleEndian(h[8..]);
        if (sequence != expectedSequence)
            throw new VfioException(Errno.EPROTO, Decode, $"frame sequence {sequence} where {expectedSequence} was expected (a frame was lost, repeated or reordered)");
        bool payloadUnchecked = h[1] == FlagPayloadUnchecked && IsData(type);
        bool chunk = h[1] == FlagPayloadChunk && IsData(type);
        if (payloadUnchecked && !transportAuthenticates)
            throw new VfioException(Errno.EPROTO, Decode, $"{type} frame {sequence} carries no payload CRC, which only a transport that authenticates every byte may allow");
        if (chunk && !transportCarriesChunks)
            throw new VfioException(Errno.EPROTO, Decode, $"{type} frame {sequence} says its payload travels beside the stream, which only the engine's in-process pipe allows");
        if (h[1] != 0 && !payloadUnchecked && !chunk)
            throw new VfioException(Errno.EPROTO, Decode, $"frame {sequence} has unknown flags 0x{h[1]:x2}");
        if (length > maxPayload)
            throw new VfioException(Errno.EMSGSIZE, Decode, $"frame {sequence} declares {length} payload bytes, above the stream's limit of {maxPayload}");
        CheckShape(type, device, (int)length, sequence, deviceCount);
        if (chunk)
            return TryReadChunkFrame(ref buffer, type, device, sequence, (int)length, out frame);
        long total = FrameHeaderSize + (long)length + FrameTrailerSize;
        if (buffer.Length < total)
            return false;

        uint crc = 0xFFFFFFFFu;
        if (!payloadUnchecked)
        {
            foreach (var segment in buffer.Slice(0, FrameHeaderSize + length))
                crc = Crc32C.Append(crc, segment.Span);
        }
        Span<byte> t = stackalloc byte[FrameTrailerSize];
        buffer.Slice(FrameHeaderSize + length, FrameTrailerSize).CopyTo(t);
        if ((payloadUnchecked ? 0u : ~crc) != BinaryPrimitives.ReadUInt32LittleEndian(t))
            throw new VfioException(Errno.EBADMSG, Decode, $"{type} frame {sequence} is corrupt (CRC-32C mismatch over {length} payload bytes)");
        frame = new MigrationFrame(type, device, sequence, buffer.Slice(FrameHeaderSize, length));
        buffer = buffer.Slice(total);
        return true;
    }

    // A chunk frame in the stream: the header (checked) and a zero trailer; the payload is the pipe's next chunk.
    private static bool TryReadChunkFrame(ref ReadOnlySequence<byte> buffer, MigrationFrameType type, ushort device, uint sequence, int length, out MigrationFrame frame)
    {
        frame = default;
        if (buffer.Length < FrameHeaderSize + FrameTrailerSize)
            return false;
        Span<byte> t = stackalloc byte[FrameTrailerSize];
        buffer.Slice(FrameHeaderSize, FrameTrailerSize).CopyTo(t);
        if (BinaryPrimitives.ReadUInt32LittleEndian(t) != 0)
            throw new VfioException(Errno.EBADMSG, Decode, $"{type} frame {sequence} carries its payload beside the stream but its trailer is not zero");
        frame = new MigrationFrame(type, device, sequence, ReadOnlySequence<byte>.Empty) { ChunkLength = length };
        buffer = buffer.Slice(FrameHeaderSize + FrameTrailerSize);
        return true;
    }

    /// <summary>True for types that travel source → destination.</summary>
    public static bool IsForward(MigrationFrameType type) => (byte)type is >= 0x01 and <= 0x0B;

    /// <summary>True for types that travel destination → source.</summary>
    public static bool IsReturn(MigrationFrameType type) => (byte)type is >= 0x41 and <= 0x46;

    // Per-type rules: which index a frame may carry and how long its payload may be.
    private static void CheckShape(MigrationFrameType type, ushort device, int length, uint sequence, ushort deviceCount)
    {
        bool streamLevel = device == MigrationFrame.StreamLevel;
        bool deviceOk = device < deviceCount;
        (bool indexOk, bool lengthOk, string rule) = type switch
        {
            MigrationFrameType.Setup => (deviceOk, length is >= SetupFixedSize and <= SetupFixedSize + MaxNameBytes, $"{SetupFixedSize}–{SetupFixedSize + MaxNameBytes} payload bytes"),
            MigrationFrameType.PreCopyData or MigrationFrameType.StopCopyData => (deviceOk, length > 0, "at least 1 payload byte"),
            MigrationFrameType.Profile => (deviceOk, length is > 0 and <= Compat.MigrationProfileJson.MaxBytes, $"1–{Compat.MigrationProfileJson.MaxBytes} payload bytes"),
            MigrationFrameType.InitDataSent or MigrationFrameType.InitDataAck => (deviceOk, length == 0, "no payload"),
            MigrationFrameType.Switchover or MigrationFrameType.End or MigrationFrameType.Commit or MigrationFrameType.Committed => (streamLevel, length == 0, "no payload"),
            MigrationFrameType.Begin => (streamLevel, length == MigrationIdSize, $"{MigrationIdSize} payload bytes"),
            MigrationFrameType.DeviceEnd => (deviceOk, length == 8, "8 payload bytes"),
            MigrationFrameType.Abort => (streamLevel, IsStatusLength(length), "a status payload"),
            MigrationFrameType.Ready => (deviceOk, length == 8, "8 payload bytes"),
            MigrationFrameType.LoadResult => (deviceOk, IsStatusLength(length), "a status payload"),
            MigrationFrameType.Complete => (streamLevel, length == 8, "8 payload bytes"),
            MigrationFrameType.Error => (streamLevel || deviceOk, IsStatusLength(length), "a status payload"),
            _ => throw new VfioException(Errno.EPROTO, Decode, $"frame {sequence} has unknown type 0x{(byte)type:x2}"),
        };
        if (!indexOk)
        {
            throw new VfioException(Errno.EPROTO, Decode, streamLevel
                ? $"{type} frame {sequence} must name a device, not the stream"
                : $"{type} frame {sequence} names device {device}, but {(IsStreamLevelType(type) ? "it is a stream-level frame" : $"the stream has {deviceCount} devices")}");
        }
        if (!lengthOk)
            throw new VfioException(Errno.EPROTO, Decode, $"{type} frame {sequence} has {length} payload bytes; the type requires {rule}");
    }

    private static bool IsStreamLevelType(MigrationFrameType type)
        => type is MigrationFrameType.Switchover or MigrationFrameType.End or MigrationFrameType.Abort or MigrationFrameType.Complete
            or MigrationFrameType.Begin or MigrationFrameType.Commit or MigrationFrameType.Committed;

    private static bool IsStatusLength(int length) => length is >= StatusFixedSize and <= StatusFixedSize + MaxMessageBytes;

    /// <summary>Encodes a setup payload; returns its length. The name is cut to <see cref="MaxNameBytes"/> bytes.</summary>
    public static int WriteSetup(Span<byte> destination, in MigrationDeviceSetup setup)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, (ulong)setup.Capabilities);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], setup.StopCopySize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[16..], (uint)setup.Plan);
        int n = WriteTruncatedUtf8(setup.Name, destination[SetupFixedSize..], MaxNameBytes);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[20..], (ushort)n);
        return SetupFixedSize + n;
    }

    /// <summary>Decodes a setup payload.</summary>
    /// <exception cref="VfioException">EPROTO when the layout is inconsistent or the plan has unknown bits.</exception>
    public static MigrationDeviceSetup ReadSetup(in ReadOnlySequence<byte> payload)
    {
        Span<byte> p = stackalloc byte[SetupFixedSize + MaxNameBytes];
        if (payload.Length is < SetupFixedSize or > SetupFixedSize + MaxNameBytes)
            throw new VfioException(Errno.EPROTO, Decode, $"setup payload of {payload.Length} bytes");
        p = p[..(int)payload.Length];
        payload.CopyTo(p);
        var caps = (VfioMigrationFlags)BinaryPrimitives.ReadUInt64LittleEndian(p);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
        var plan = (MigrationPlanFlags)BinaryPrimitives.ReadUInt32LittleEndian(p[16..]);
        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(p[20..]);
        if (nameLength != p.Length - SetupFixedSize)
            throw new VfioException(Errno.EPROTO, Decode, $"setup payload names {nameLength} name bytes but carries {p.Length - SetupFixedSize}");
        if ((plan & ~(MigrationPlanFlags.PreCopy | MigrationPlanFlags.P2P | MigrationPlanFlags.Profile)) != 0)
            throw new VfioException(Errno.EPROTO, Decode, $"setup payload has unknown plan bits 0x{(uint)plan:x}");
        string name = DecodeUtf8(p[SetupFixedSize..], "device name");
        return new MigrationDeviceSetup(caps, size, plan, name);
    }

    /// <summary>Encodes a status payload; returns its length. The message is cut to <see cref="MaxMessageBytes"/> bytes.</summary>
    public static int WriteStatus(Span<byte> destination, in MigrationStatus status)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, (int)status.Errno);
        destination[4] = status.Phase;
        destination[5] = 0;
        int n = WriteTruncatedUtf8(status.Message ?? "", destination[StatusFixedSize..], MaxMessageBytes);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], (ushort)n);
        return StatusFixedSize + n;
    }

    /// <summary>Decodes a status payload.</summary>
    /// <exception cref="VfioException">EPROTO when the layout is inconsistent or the errno is negative.</exception>
    public static MigrationStatus ReadStatus(in ReadOnlySequence<byte> payload)
    {
        if (payload.Length is < StatusFixedSize or > StatusFixedSize + MaxMessageBytes)
            throw new VfioException(Errno.EPROTO, Decode, $"status payload of {payload.Length} bytes");
        Span<byte> p = stackalloc byte[StatusFixedSize + MaxMessageBytes];
        p = p[..(int)payload.Length];
        payload.CopyTo(p);
        int errno = BinaryPrimitives.ReadInt32LittleEndian(p);
        int messageLength = BinaryPrimitives.ReadUInt16LittleEndian(p[6..]);
        if (errno < 0 || errno > 4095)
            throw new VfioException(Errno.EPROTO, Decode, $"status payload carries errno {errno} (0 to 4095 allowed)");
        if (p[5] != 0)
            throw new VfioException(Errno.EPROTO, Decode, "status payload has a non-zero reserved byte");
        if (messageLength != p.Length - StatusFixedSize)
            throw new VfioException(Errno.EPROTO, Decode, $"status payload names {messageLength} message bytes but carries {p.Length - StatusFixedSize}");
        return new MigrationStatus((Errno)errno, p[4], DecodeUtf8(p[StatusFixedSize..], "status message"));
    }

    /// <summary>Encodes a migration id (RFC 4122 byte order) into the first <see cref="MigrationIdSize"/> bytes.</summary>
    public static void WriteMigrationId(Span<byte> destination, Guid id)
    {
        if (!id.TryWriteBytes(destination, bigEndian: true, out _))
            throw new ArgumentException("the destination is too small for a migration id", nameof(destination));
    }

    /// <summary>Reads the migration id of a Begin frame.</summary>
    /// <exception cref="VfioException">EPROTO when the payload is not 16 bytes.</exception>
    public static Guid ReadMigrationId(in ReadOnlySequence<byte> payload)
    {
        if (payload.Length != MigrationIdSize)
            throw new VfioException(Errno.EPROTO, Decode, $"expected a {MigrationIdSize}-byte migration id, got {payload.Length} bytes");
        Span<byte> p = stackalloc byte[MigrationIdSize];
        payload.CopyTo(p);
        return new Guid(p, bigEndian: true);
    }

    /// <summary>Reads the u64 payload of DeviceEnd, Ready and Complete frames.</summary>
    public static ulong ReadUInt64(in ReadOnlySequence<byte> payload)
    {
        if (payload.Length != 8)
            throw new VfioException(Errno.EPROTO, Decode, $"expected an 8-byte payload, got {payload.Length}");
        Span<byte> p = stackalloc byte[8];
        payload.CopyTo(p);
        return BinaryPrimitives.ReadUInt64LittleEndian(p);
    }

    private static int WriteTruncatedUtf8(string text, Span<byte> destination, int max)
    {
        var encoder = Encoding.UTF8.GetEncoder();
        encoder.Convert(text.AsSpan(), destination[..Math.Min(max, destination.Length)], flush: true, out _, out int bytes, out _);
        return bytes;
    }

    private static string DecodeUtf8(ReadOnlySpan<byte> bytes, string what)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (ArgumentException)
        {
            throw new VfioException(Errno.EPROTO, Decode, $"the {what} is not valid UTF-8");
        }
    }
}
