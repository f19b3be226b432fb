using System.CommandLine;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary>
/// What <c>resolve</c>, <c>recover</c> and <c>state</c> share: the device argument, opening the devices a record
/// names (closed together when the command ends), and the JSON of a resolution.
/// </summary>
internal static class RecordCommands
{
    /// <summary>The ADDRESS argument of <c>recover</c> and <c>state</c>: a device that outlives a process (unix: or vfio:).</summary>
    public static Argument<DeviceAddress?> Address()
    {
        var address = CliOptions.DeviceArgument("The device", outlivingProcessOnly: true);
        address.Validators.Add(r =>
        {
            // The token, not the value: a malformed address has its own error, and its value must not be read.
            if (r.Tokens.Count > 0 && InProcessTransport(r.Tokens[0].Value) is { } transport)
                r.AddError($"a {transport.Scheme}: device lives in one process; there is nothing to recover or show");
        });
        return address;
    }

    // The transport of an address whose device lives in one process (sample:), else null.
    private static DeviceTransport? InProcessTransport(string address)
    {
        int colon = address.IndexOf(':', StringComparison.Ordinal);
        return DeviceTransports.Find(colon < 0 ? address : address[..colon]) is { OutlivesProcess: false } transport ? transport : null;
    }

    /// <summary>Opens <paramref name="address"/>; a sample: device named by a record ended with the process that migrated it.</summary>
    public static ValueTask<IVfioMigrationDevice> OpenAsync(DeviceAddress address, CancellationToken cancellationToken)
        => address.Transport.OutlivesProcess
            ? address.OpenAsync(cancellationToken)
            : throw new VfioException(Errno.EOPNOTSUPP, "open " + address, $"an in-process {address.Scheme} device ended with the process that migrated it");

    public static ResolveJson Json(MigrationResolution result, string? sourceHostCommand) => new(
        result.Id.ToString("D"),
        result.Decision is { } d ? MigrationResolver.Name(d) : null,
        result.DecidedNow,
        result.Ok,
        [.. result.Devices.Select(dev => new ResolvedDeviceJson(Side(dev.Side), dev.Name, dev.State is { } s ? MigrationStateMachine.Name(s) : null, dev.Action, dev.Ok))],
        sourceHostCommand);

    public static string Side(MigrationSide side) => side == MigrationSide.Source ? "source" : "destination";

    /// <summary>The devices one command opened; closed together at its end.</summary>
    public sealed class OpenedDevices : IAsyncDisposable
    {
        private readonly List<IVfioMigrationDevice> _all = [];

        /// <summary>Opens every device <paramref name="record"/> names, in its order.</summary>
        public async Task<List<IVfioMigrationDevice>> OpenAllAsync(MigrationRecord record, CancellationToken cancellationToken)
        {
            var list = new List<IVfioMigrationDevice>();
            foreach (var name in record.Devices)
            {
                var device = await OpenAsync(DeviceAddress.Parse(name), cancellationToken).ConfigureAwait(false);
                _all.Add(device);
                list.Add(device);
            }
            return list;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var d in _all)
                await d.DisposeAsync().ConfigureAwait(false);
        }
    }
}
