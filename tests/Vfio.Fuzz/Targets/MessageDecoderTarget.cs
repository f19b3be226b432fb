using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.Fuzz.Targets;

/// <summary>
/// Fuzz target: the vfio-user message decoder and the server's command dispatcher. Input = the bytes a client sends
/// after VERSION. Anything but a clean errno reply or a clean close is a bug: the harness never throws.
/// </summary>
public static class MessageDecoderTarget
{
    public static void Fuzz(ReadOnlySpan<byte> data)
    {
        // 1. Header decoding on its own never throws anything but the two framing exceptions.
        if (data.Length >= VfioUserHeader.Size)
        {
            try
            {
                VfioUserFrame.ReadHeader(data);
            }
            catch (VfioUserFramingException)
            {
            }
        }

        // 2. Payload codecs: only VfioException (EINVAL) on malformed input.
        foreach (var decode in Decoders)
        {
            try
            {
                decode(data);
            }
            catch (VfioException)
            {
            }
        }

        // 3. The whole server path, negotiated and not.
        using (var harness = new DispatchHarness(negotiate: true))
            harness.Feed(data);
        using (var fresh = new DispatchHarness(negotiate: false))
            fresh.Feed(data);
    }

    private delegate void Decoder(ReadOnlySpan<byte> data);

    private static readonly Decoder[] Decoders =
    [
        d => VersionPayload.Decode(d),
        d => DmaMapPayload.Decode(d),
        d => DmaUnmapPayload.Decode(d),
        d => DeviceInfoPayload.Decode(d),
        d => RegionInfoPayload.Decode(d),
        d => IrqInfoPayload.Decode(d),
        d => SetIrqsPayload.Decode(d),
        d => RegionAccessPayload.Decode(d, "fuzz"),
        d => DmaAccessPayload.Decode(d, "fuzz"),
        d => MigDataPayload.Decode(d, "fuzz"),
    ];
}
