using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.Tests.User;

// Each option's documented range is the range Validate() enforces; the defaults sit inside it.
public sealed class OptionRangeTests
{
    [Fact]
    public void Defaults_are_valid_and_match_the_documented_values()
    {
        VfioUserClientOptions.Default.Validate();
        VfioUserServerOptions.Default.Validate();
        Assert.Equal(1 << 20, VfioUserClientOptions.Default.MaxDataTransferBytes);
        Assert.Equal(64 << 10, VfioUserClientOptions.Default.WriteChunkBytes);
        Assert.Equal(8, VfioUserServerOptions.Default.MaxMessageFds);
        Assert.Equal(VfioUserSpec.DefaultMaxDataTransferBytes, ProtocolLimits.MaxDataTransferBytes);
    }

    [Theory]
    [InlineData(511, false)]
    [InlineData(512, true)]
    [InlineData(64 << 20, true)]
    [InlineData((64 << 20) + 1, false)]
    public void Client_max_data_transfer_is_512_bytes_to_64_MiB(int bytes, bool valid)
        => AssertRange(() => new VfioUserClientOptions { MaxDataTransferBytes = bytes }.Validate(), valid, "MaxDataTransferBytes");

    [Theory]
    [InlineData(511, false)]
    [InlineData(1 << 20, true)]
    [InlineData((1 << 20) + 1, false)]
    public void Server_max_data_transfer_is_512_bytes_to_1_MiB(int bytes, bool valid)
        => AssertRange(() => new VfioUserServerOptions { MaxDataTransferBytes = bytes }.Validate(), valid, "MaxDataTransferBytes");

    [Theory]
    [InlineData(-1, false)]
    [InlineData(0, true)]
    [InlineData(1024, true)]
    [InlineData(1025, false)]
    public void Max_message_fds_is_0_to_1024_on_both_sides(int fds, bool valid)
    {
        AssertRange(() => new VfioUserClientOptions { MaxMessageFds = fds }.Validate(), valid, "MaxMessageFds");
        AssertRange(() => new VfioUserServerOptions { MaxMessageFds = fds }.Validate(), valid, "MaxMessageFds");
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(VfioUserClientOptions.MaxPipelineDepth, true)]
    [InlineData(VfioUserClientOptions.MaxPipelineDepth + 1, false)]
    public void Pipeline_depth_is_1_to_64(int depth, bool valid)
        => AssertRange(() => new VfioUserClientOptions { PipelineDepth = depth }.Validate(), valid, "PipelineDepth");

    [Fact]
    public void A_server_handshake_timeout_must_be_positive()
        => AssertRange(() => new VfioUserServerOptions { HandshakeTimeout = TimeSpan.Zero }.Validate(), false, "HandshakeTimeout");

    [Fact]
    public void A_server_with_options_out_of_range_is_refused_at_construction()
        => Assert.Throws<ArgumentOutOfRangeException>(() => new VfioUserServer("/nonexistent/x.sock", VfioUserDeviceDefinition.ForSample(new Vfio.Sample.SampleDevice()), new VfioUserServerOptions { MaxMessageFds = -1 }));

    private static void AssertRange(Action validate, bool valid, string name)
    {
        if (valid)
        {
            validate();
            return;
        }
        var ex = Assert.Throws<ArgumentOutOfRangeException>(validate);
        Assert.Equal(name, ex.ParamName);
    }
}
