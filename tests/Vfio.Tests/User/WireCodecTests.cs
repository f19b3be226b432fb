using System.Buffers.Binary;
using CsCheck;
using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.Tests.User;

public sealed class WireCodecTests
{
    [Fact]
    public void Header_layout_matches_the_spec_table()
    {
        var bytes = new byte[16];
        new VfioUserHeader(0x1234, VfioUserCommand.DeviceFeature, 40, VfioUserMessageFlags.Reply | VfioUserMessageFlags.Error, 22).Encode(bytes);
        Assert.Equal(new byte[] { 0x34, 0x12, 16, 0, 40, 0, 0, 0, 0x21, 0, 0, 0, 22, 0, 0, 0 }, bytes);
        var back = VfioUserHeader.Decode(bytes);
        Assert.True(back.IsReply);
        Assert.True(back.IsError);
        Assert.Equal(24, back.PayloadLength);
    }

    [Theory]
    [InlineData(15u)]
    [InlineData(0u)]
    [InlineData((uint)ProtocolLimits.MaxMessageBytes + 1)]
    [InlineData(uint.MaxValue)]
    public void Header_with_an_unframeable_size_is_a_framing_error(uint size)
    {
        var bytes = new byte[16];
        new VfioUserHeader(1, VfioUserCommand.RegionWrite, size, VfioUserMessageFlags.Command, 0).Encode(bytes);
        var ex = Assert.Throws<VfioUserFramingException>(() => VfioUserFrame.ReadHeader(bytes));
        Assert.Equal(size, ex.Header.MessageSize);
        // One error model: a framing failure is a VfioException carrying EPROTO, caught by the same handlers.
        VfioException asErrno = ex;
        Assert.Equal(Errno.EPROTO, asErrno.Errno);
        Assert.StartsWith("EPROTO: vfio-user: msg_size ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_short_header_is_a_protocol_error_carrying_EPROTO()
    {
        var ex = Assert.Throws<VfioUserProtocolException>(() => VfioUserHeader.Decode(new byte[15]));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        Assert.StartsWith("EPROTO: vfio-user: a header needs 16 bytes", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Limits_match_libvfio_user()
    {
        Assert.Equal(1048608, ProtocolLimits.MaxMessageBytes);
        Assert.Equal(1048576, ProtocolLimits.MaxDataTransferBytes);
    }

    [Fact]
    public void Payload_layouts_follow_the_offset_tables()
    {
        var map = new DmaMapPayload(32, 3, 0x1000, 0x2000, 0x3000).Encode();
        Assert.Equal(32, map.Length);
        Assert.Equal(0x2000UL, BinaryPrimitives.ReadUInt64LittleEndian(map.AsSpan(16)));
        Assert.Equal(new DmaMapPayload(32, 3, 0x1000, 0x2000, 0x3000), DmaMapPayload.Decode(map));
        var region = new RegionInfoPayload(32, 3, 7, 0, 256, 0).Encode();
        Assert.Equal(256UL, BinaryPrimitives.ReadUInt64LittleEndian(region.AsSpan(16)));
        var access = new byte[16];
        new RegionAccessPayload(0x10, 7, 64).Encode(access);
        Assert.Equal(new byte[] { 0x10, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 64, 0, 0, 0 }, access);
        var mig = new byte[8];
        new MigDataPayload(8 + 1024, 1024).Encode(mig);
        Assert.Equal(new byte[] { 0x08, 0x04, 0, 0, 0, 0x04, 0, 0 }, mig);
        Assert.Equal(20, new SetIrqsPayload(20, 0x24, 0, 0, 1).Encode().Length);
    }

    [Fact]
    public void Version_json_is_nul_terminated_and_strict()
    {
        var payload = new VersionPayload(0, 2, new VersionCapabilities { MaxMessageFds = 8, MaxDataTransferSize = 1048576, Migration = new MigrationCapability { PageSize = 4096 } }).Encode();
        Assert.Equal(0, payload[^1]);
        var text = VersionPayload.JsonText(payload);
        Assert.Equal("{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,\"migration\":{\"pgsize\":4096}}}", text);
        var back = VersionPayload.Decode(payload);
        Assert.Equal(8, back.Capabilities!.MaxMessageFds);
        Assert.Null(back.Capabilities.TwinSocket);

        static byte[] Raw(string json, bool nul)
        {
            var b = new byte[4 + System.Text.Encoding.UTF8.GetByteCount(json) + (nul ? 1 : 0)];
            System.Text.Encoding.UTF8.GetBytes(json, b.AsSpan(4));
            return b;
        }
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => VersionPayload.Decode(Raw("{}", false))).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => VersionPayload.Decode(Raw("{\"capabilities\":{\"max_msg_fds\":\"8\"}}", true))).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => VersionPayload.Decode(Raw("{\"capabilities\":7}", true))).Errno);
        // Unknown keys are ignored; libvfio-user's exact reply text parses.
        var lib = VersionPayload.Decode(Raw("{ \"capabilities\": { \"max_msg_fds\": 8, \"max_data_xfer_size\": 1048576, \"migration\": { \"pgsize\": 4096 } } }", true));
        Assert.Equal(4096, lib.Capabilities!.Migration!.PageSize);
        Assert.Null(VersionPayload.Decode(Raw("{\"capabilities\":{\"future\":[1]}}", true)).Capabilities!.MaxMessageFds);
    }

    [Fact]
    public void Dispatcher_answers_the_libvfio_user_error_table()
    {
        using var h = new DispatchHarness();
        var set = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(set, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(4), 0x20002);
        foreach (uint state in new uint[] { 0, 5, 7, 8 })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(8), state);
            h.Feed(VfioUserFrame.Build(9, VfioUserCommand.DeviceFeature, VfioUserMessageFlags.Command, set));
            Assert.Equal(Errno.EINVAL, h.Replies[^1].Error);
        }
        // SET PRE_COPY is echoed byte-for-byte (16 + 16 bytes).
        BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(8), 6);
        BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(12), 0xffffffff);
        h.Feed(VfioUserFrame.Build(10, VfioUserCommand.DeviceFeature, VfioUserMessageFlags.Command, set));
        Assert.Equal((Errno.None, 32), (h.Replies[^1].Error, h.Replies[^1].ReplyLength));
        // MIG_DATA_READ is padded to 8 + requested.
        var read = new byte[8];
        new MigDataPayload(8 + 1024, 1024).Encode(read);
        h.Feed(VfioUserFrame.Build(11, VfioUserCommand.MigDataRead, VfioUserMessageFlags.Command, read));
        Assert.Equal((Errno.None, 16 + 8 + 1024), (h.Replies[^1].Error, h.Replies[^1].ReplyLength));
        // Unsupported feature: ENOTTY (kernel); unknown command: EINVAL.
        h.Feed(VfioUserFrame.Build(12, VfioUserCommand.DeviceFeature, VfioUserMessageFlags.Command, new byte[] { 8, 0, 0, 0, 3, 0, 1, 0 }));
        Assert.Equal(Errno.ENOTTY, h.Replies[^1].Error);
        h.Feed(VfioUserFrame.Build(13, (VfioUserCommand)99, VfioUserMessageFlags.Command, new byte[4]));
        Assert.Equal(Errno.EINVAL, h.Replies[^1].Error);
        Assert.False(h.Closed);
    }

    [Fact]
    public void Random_bytes_never_crash_the_decoder_or_dispatcher()
    {
        Gen.Byte.Array[0, 300].Sample(bytes =>
        {
            using var h = new DispatchHarness();
            h.Feed(bytes);
        }, iter: 2000);
    }

    [Fact]
    public void Random_payloads_behind_a_valid_header_never_crash_the_dispatcher()
    {
        Gen.Select(Gen.UShort[0, 20], Gen.Byte.Array[0, 200]).Sample((cmd, payload) =>
        {
            using var h = new DispatchHarness();
            h.Feed(VfioUserFrame.Build(5, (VfioUserCommand)cmd, VfioUserMessageFlags.Command, payload));
            Assert.Single(h.Replies.Skip(1));
        }, iter: 3000);
    }

    [Fact]
    public void Fuzz_corpus_replays_without_a_crash()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        var files = Directory.GetFiles(Path.Combine(dir.FullName, "tests", "Vfio.Fuzz", "corpus"));
        Assert.True(files.Length >= 40, $"only {files.Length} corpus files");
        foreach (var file in files)
        {
            var data = File.ReadAllBytes(file);
            using var h = new DispatchHarness();
            h.Feed(data);
            using var fresh = new DispatchHarness(negotiate: false);
            fresh.Feed(data);
        }
    }
}
