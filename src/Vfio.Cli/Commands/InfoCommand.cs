using System.CommandLine;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig info DEVICE</c>: what a device is and which migration state it is in. For <c>vfio:NAME</c>
/// also sysfs, device and region info; <c>vfio-mig info --list</c> lists the kernel VFIO devices.
/// </summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var device = new Argument<string?>("device") { Description = "Device address: sample:[options], vfio:NAME", Arity = ArgumentArity.ZeroOrOne };
        var list = new Option<bool>("--list") { Description = "List the VFIO devices found in sysfs (mdevs and vfio-bound PCI devices)" };
        var command = new Command("info", "Show a device's capabilities, migration state and (for vfio:) regions.") { device, list };
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                if (parse.GetValue(list))
                {
                    var found = VfioSysfs.Discover();
                    foreach (var e in found)
                        Console.Out.Write($"vfio:{e.Name}  {e.Bus.ToString().ToLowerInvariant()}  driver {e.Driver ?? "none"}  iommu group {(e.IommuGroup?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none")}\n");
                    if (found.Count == 0)
                        Console.Error.WriteLine("no VFIO devices in /sys/bus/mdev/devices or vfio-bound /sys/bus/pci/devices");
                    return 0;
                }
                string? text = parse.GetValue(device);
                if (text is null)
                {
                    Console.Error.WriteLine("EINVAL: give a device address (sample:, vfio:NAME) or --list");
                    return 2;
                }
                var address = DeviceAddress.Parse(text);
                await using var opened = await address.OpenAsync(cancellationToken).ConfigureAwait(false);
                if (opened is KernelMigrationDevice kernel)
                {
                    Console.Out.Write(kernel.Describe().ToString());
                    return 0;
                }
                var caps = await opened.GetCapabilitiesAsync(cancellationToken).ConfigureAwait(false);
                var state = await opened.GetStateAsync(cancellationToken).ConfigureAwait(false);
                Console.Out.Write($"device:       {opened.Name}\n");
                Console.Out.Write($"migration:    caps {MigrationStateMachine.FormatCaps(caps)} ({caps})\n");
                Console.Out.Write($"state:        {MigrationStateMachine.Name(state)}\n");
                return 0;
            }
            catch (VfioException e)
            {
                Console.Error.WriteLine(e.Message);
                return 1;
            }
        });
        return command;
    }
}
