using System.Globalization;
using Vfio.Engine;
using Vfio.Migration;

namespace MinimalDevice;

/// <summary>Migrates a <see cref="RegisterFileDevice"/> into a fresh one in process and checks the registers.</summary>
internal static class Example
{
    public static async Task<int> RunAsync(TextWriter output, CancellationToken cancellationToken = default)
    {
        using var source = new RegisterFileDevice();
        using var destination = new RegisterFileDevice();
        for (int i = 0; i < source.Registers.Length; i++)
            source.Registers[i] = (uint)(0xC0DE0000 + i);

        // The engine speaks to any IVfioMigrationDevice: here the devices in this process. The same device
        // served over vfio-user (VfioUserServer) or reached through the kernel migrates the same way.
        await using var from = new InProcessMigrationDevice(source, "register-file:source");
        await using var to = new InProcessMigrationDevice(destination, "register-file:destination");
        var statistics = await MigrationEngine.MigrateAsync([from], [to], MigrationOptions.Default, null, cancellationToken).ConfigureAwait(false);

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"migrated {statistics.TotalBytes} bytes in {statistics.TotalTime.TotalMilliseconds:0.0} ms, downtime {statistics.Downtime.TotalMilliseconds:0.0} ms"));
        if (!source.Registers.SequenceEqual(destination.Registers))
        {
            output.WriteLine("MISMATCH: the destination's registers differ");
            return 3;
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"verified: destination registers match the source (r0 = 0x{destination.Registers[0]:x8})"));
        return 0;
    }
}
