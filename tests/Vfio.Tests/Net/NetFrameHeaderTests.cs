using System.Buffers.Binary;
using Vfio.Net;

namespace Vfio.Tests.Net;

/// <summary>
/// The channel frame header (docs/network.md §4): decoded by a pure function that asks for more bytes when it has
/// fewer than 20, and refuses a damaged or disallowed header (EBADMSG) before its length is acted on.
/// </summary>
public sealed class NetFrameHeaderTests
{
    private static byte[] Encoded(NetFrameType type = NetFrameType.Data, bool noPayloadCrc = false, int length = 4096, ulong sequence = 7)
    {
        byte[] bytes = new byte[NetProtocol.FrameHeaderSize];
        new NetFrameHeader(type, noPayloadCrc, length, sequence).WriteTo(bytes);
        return bytes;
    }

    // Changes one byte and fixes the header CRC, so the check under test is the one that fires.
    private static byte[] WithByte(int offset, byte value, byte[]? bytes = null)
    {
        bytes ??= Encoded();
        bytes[offset] = value;
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(16), Crc32C.Compute(bytes.AsSpan(0, 16)));
        return bytes;
    }

    private static VfioException Refused(byte[] bytes, bool sealedFrames = false)
        => Assert.Throws<VfioException>(() => NetFrameHeader.TryDecode(bytes, sealedFrames, "channel 0", out _));

    [Theory]
    [InlineData(1, false, 0, 0UL)]
    [InlineData(1, true, NetProtocol.MaxFramePayload, ulong.MaxValue)]
    [InlineData(7, false, 1, 3UL)]
    public void A_header_round_trips_big_endian_with_its_own_crc(byte typeByte, bool noPayloadCrc, int length, ulong sequence)
    {
        var type = (NetFrameType)typeByte;
        byte[] bytes = Encoded(type, noPayloadCrc, length, sequence);
        Assert.Equal((byte)type, bytes[0]);
        Assert.Equal((uint)length, BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4)));
        Assert.Equal(sequence, BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(8)));
        Assert.True(NetFrameHeader.TryDecode(bytes, sealedFrames: false, "channel 0", out var header));
        Assert.Equal(new NetFrameHeader(type, noPayloadCrc, length, sequence), header);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(19)]
    public void Fewer_than_twenty_bytes_ask_for_more(int available)
    {
        Assert.False(NetFrameHeader.TryDecode(Encoded().AsSpan(0, available), sealedFrames: false, "channel 0", out var header));
        Assert.Equal(default, header);
    }

    [Fact]
    public void Only_the_first_twenty_bytes_are_the_header()
    {
        byte[] bytes = [.. Encoded(), 0xFF, 0xFF];
        Assert.True(NetFrameHeader.TryDecode(bytes, sealedFrames: false, "channel 0", out var header));
        Assert.Equal(4096, header.PayloadLength);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(12)]
    [InlineData(17)]
    public void A_flipped_bit_anywhere_fails_the_header_crc(int offset)
    {
        byte[] bytes = Encoded();
        bytes[offset] ^= 0x10;
        var e = Refused(bytes);
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("CRC32C mismatch in a frame header", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(255)]
    public void An_unknown_type_is_refused(byte type)
        => Assert.Contains($"type {type}", Refused(WithByte(0, type)).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void A_reserved_byte_that_is_not_zero_is_refused(int offset)
        => Assert.Equal(Errno.EBADMSG, Refused(WithByte(offset, 1)).Errno);

    [Fact]
    public void The_no_payload_crc_flag_is_allowed_on_unsealed_data_frames_only()
    {
        Assert.True(NetFrameHeader.TryDecode(Encoded(noPayloadCrc: true), sealedFrames: false, "channel 0", out var header));
        Assert.True(header.NoPayloadCrc);
        Assert.Equal(Errno.EBADMSG, Refused(Encoded(noPayloadCrc: true), sealedFrames: true).Errno);
        Assert.Equal(Errno.EBADMSG, Refused(WithByte(1, NetFrame.FlagNoPayloadCrc, Encoded(NetFrameType.Status))).Errno);
        Assert.Equal(Errno.EBADMSG, Refused(WithByte(1, 2)).Errno);
    }

    [Fact]
    public void A_length_above_the_frame_limit_is_refused_before_anything_is_allocated()
    {
        byte[] bytes = Encoded();
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), NetProtocol.MaxFramePayload + 1u);
        var e = Refused(WithByte(0, (byte)NetFrameType.Data, bytes));
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("exceeds the limit of 4194304 bytes", e.Message, StringComparison.Ordinal);
    }

    // Any 20 bytes from a peer: a header that decodes is within the limits; anything else is EBADMSG, never another
    // exception. Half the inputs get a valid header CRC so that the field checks behind it are reached.
    [Fact]
    public void Random_bytes_decode_within_the_limits_or_fail_with_EBADMSG_only()
    {
        var random = new Random(14);
        byte[] bytes = new byte[NetProtocol.FrameHeaderSize];
        int decoded = 0;
        for (int i = 0; i < 20000; i++)
        {
            random.NextBytes(bytes);
            if (i % 2 == 0)
            {
                bytes[0] = (byte)random.Next(0, 9);
                bytes[1] = (byte)random.Next(0, 3);
                bytes[2] = bytes[3] = (byte)(random.Next(0, 8) == 0 ? 1 : 0);
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)random.Next(0, 2 * NetProtocol.MaxFramePayload));
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(16), Crc32C.Compute(bytes.AsSpan(0, 16)));
            }
            try
            {
                if (NetFrameHeader.TryDecode(bytes, sealedFrames: i % 4 == 0, "channel 0", out var header))
                {
                    decoded++;
                    Assert.InRange(header.PayloadLength, 0, NetProtocol.MaxFramePayload);
                    Assert.True(Enum.IsDefined(header.Type));
                }
            }
            catch (VfioException e)
            {
                Assert.Equal(Errno.EBADMSG, e.Errno);
            }
        }
        Assert.InRange(decoded, 500, 10000);
    }
}
