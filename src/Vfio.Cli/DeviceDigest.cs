using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Cli;

/// <summary>Reads back a device's whole state as a SHA-256 where the transport allows it.</summary>
internal static class DeviceDigest
{
    public static (byte[] Digest, string Note) Compute(IVfioMigrationDevice device)
        => device is InProcessMigrationDevice { Device: SampleDevice sample }
            ? (sample.ComputeSha256(), "")
            : ([], $"verification skipped: {device.Name} offers no read-back of its state to this program");
}
