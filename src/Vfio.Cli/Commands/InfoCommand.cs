using System.CommandLine;
using System.Globalization;
using System.Text;
using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig info DEVICE</c>: device info, regions, IRQs and migration capabilities (vfio-user, kernel, sample);
/// <c>vfio-mig info --list</c> lists the kernel VFIO devices found in sysfs.
/// </summary>
internal static class InfoCommand
{
    private static readonly string[] RegionNames = ["BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA"];
    private static readonly string[] IrqNames = ["INTx", "MSI", "MSI-X", "ERR", "REQ"];

    public static Command Create()
    {
        var device = CliOptions.DeviceArgument("The device", optional: true);
        var json = CliOptions.Json();
        var list = new Option<bool>("--list") { Description = "List the VFIO devices found in sysfs (mdevs and vfio-bound PCI devices)" };
        var connectTimeout = CliOptions.ConnectTimeout();
        var command = new Command("info", "Print a device's info, regions, IRQs and migration capabilities.") { device, json, list, connectTimeout };
        command.WithHelp(addresses: true,
            "vfio-mig info unix:./a.sock                 # a vfio-user server (vfio-mig serve)",
            "vfio-mig info sample:size=2MiB,caps=0x5 --json",
            "vfio-mig info --list                        # kernel devices; then: vfio-mig info vfio:NAME");
        command.Validators.Add(r =>
        {
            if (!r.GetValue(list) && r.GetResult(device) is null)
                r.AddError($"give a device address ({DeviceTransports.Forms()}) or --list");
        });
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(list))
                return ListKernelDevices();
            var address = parse.GetValue(device)!;
            return await address.Transport.Describe(address, parse.GetValue(json), parse.GetValue(connectTimeout).Value, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private static int ListKernelDevices()
    {
        var found = VfioSysfs.Discover();
        foreach (var e in found)
            Console.Out.Write($"vfio:{e.Name}  {e.Bus.ToString().ToLowerInvariant()}  driver {e.Driver ?? "none"}  iommu group {(e.IommuGroup?.ToString(CultureInfo.InvariantCulture) ?? "none")}\n");
        if (found.Count == 0)
            Console.Error.WriteLine("no VFIO devices in /sys/bus/mdev/devices or vfio-bound /sys/bus/pci/devices");
        return 0;
    }

    private static KernelInfoJson KernelJson(KernelDeviceReport r)
        => new("vfio:" + r.Entry.Name, r.Entry.Bus.ToString().ToLowerInvariant(), r.IommuType == 3 ? "type1v2" : "type1", r.Info.Flags,
            [.. r.Regions.Select(g => new KernelRegionJson(g.Index, g.Size, g.Offset))],
            new MigrationInfoJson(r.Capabilities is { } caps ? MigrationStateMachine.FormatCaps(caps) : null, r.State is { } st ? MigrationStateMachine.Name(st) : null, null, r.MigrationError));

    /// <summary><c>vfio-mig info vfio:NAME</c>: the kernel device's own description.</summary>
    public static async Task<int> DescribeKernelAsync(DeviceAddress address, bool asJson, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        await using var kernel = KernelMigrationDevice.Open(address.Target);
        var described = kernel.Describe();
        if (asJson)
            CliJsonContext.Write(Console.Out, KernelJson(described), CliJsonContext.Default.KernelInfoJson);
        else
            Console.Out.Write(described.ToString());
        return ExitCodes.Success;
    }

    /// <summary><c>vfio-mig info unix:PATH</c>: asks the vfio-user server.</summary>
    public static async Task<int> DescribeUnixAsync(DeviceAddress address, bool asJson, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        await using var client = await address.ConnectUnixAsync(connectTimeout, null, cancellationToken).ConfigureAwait(false);
        return Print(await QueryAsync(client, address.ToString(), cancellationToken).ConfigureAwait(false), asJson);
    }

    /// <summary><c>vfio-mig info sample:…</c>: serves the sample in process over a socketpair and asks it like a server.</summary>
    public static async Task<int> DescribeSampleAsync(DeviceAddress address, bool asJson, TimeSpan connectTimeout, CancellationToken cancellationToken)
        => Print(await QuerySampleAsync(address, cancellationToken).ConfigureAwait(false), asJson);

    private static int Print(InfoReport report, bool asJson)
    {
        if (asJson)
            CliJsonContext.Write(Console.Out, report.ToJson(), CliJsonContext.Default.InfoJson);
        else
            Console.Out.Write(report.ToText());
        return ExitCodes.Success;
    }

    private static async Task<InfoReport> QuerySampleAsync(DeviceAddress address, CancellationToken cancellationToken)
    {
        using var sample = new SampleDevice(DeviceAddress.ParseSampleOptions(address.Target));
        var (serverEnd, clientEnd) = Vfio.User.Transport.UnixFdSocket.CreateSocketPair();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var serving = VfioUserServer.ServeConnectedSocketAsync(serverEnd, VfioUserDeviceDefinition.ForSample(sample), null, cts.Token);
        try
        {
            await using var client = await VfioUserClient.ConnectAsync(clientEnd, address.ToString(), null, cancellationToken).ConfigureAwait(false);
            return await QueryAsync(client, address.ToString(), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await serving.ConfigureAwait(false);
            serverEnd.Dispose();
        }
    }

    private static async Task<InfoReport> QueryAsync(VfioUserClient client, string name, CancellationToken cancellationToken)
    {
        DeviceInfoPayload info;
        try
        {
            info = await client.GetDeviceInfoAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException e) when (e.Errno == Errno.EINVAL)
        {
            // The server's reason stays on the server; the usual one is a device a migration left stopped.
            var now = await new VfioUserMigrationDevice(client, ownsClient: false).GetStateAsync(cancellationToken).ConfigureAwait(false);
            if (now == VfioMigrationState.Running)
                throw;
            throw new CliException(ExitCodes.Failed, Errno.EINVAL, $"info {name}",
                $"the device is in {MigrationStateMachine.Name(now)}: a vfio-user server answers device, region and IRQ queries only while RUNNING (spec §7.4)",
                ["a migration stopped it (this was its source): migrate it back, or restart its server"], e);
        }
        var regions = new List<RegionRow>();
        for (uint i = 0; i < Math.Min(info.NumRegions, 100u); i++)
        {
            var r = await client.GetRegionInfoAsync(i, cancellationToken).ConfigureAwait(false);
            regions.Add(new RegionRow(i, i < RegionNames.Length ? RegionNames[i] : $"region{i}", r.Size, r.Flags));
        }
        var irqs = new List<IrqRow>();
        for (uint i = 0; i < Math.Min(info.NumIrqs, 50u); i++)
        {
            var q = await client.GetIrqInfoAsync(i, cancellationToken).ConfigureAwait(false);
            irqs.Add(new IrqRow(i, i < IrqNames.Length ? IrqNames[i] : $"irq{i}", q.Count, q.Flags));
        }
        var device = new VfioUserMigrationDevice(client, ownsClient: false);
        string? caps = null, state = null, migError = null;
        ulong? stopCopy = null;
        try
        {
            caps = MigrationStateMachine.FormatCaps(await device.GetCapabilitiesAsync(cancellationToken).ConfigureAwait(false));
            state = MigrationStateMachine.Name(await device.GetStateAsync(cancellationToken).ConfigureAwait(false));
            stopCopy = await device.GetStopCopySizeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException ex) when (state is not null && ex.Errno is Errno.EINVAL or Errno.ENOTTY)
        {
            // MIG_DATA_SIZE is optional: libvfio-user answers EINVAL (spec §1.1). The size stays "n/a".
        }
        catch (VfioException ex)
        {
            migError ??= ex.Message;
        }
        return new InfoReport(name, $"{VfioUserSpec.VersionMajor}.{client.ServerMinor}", client.ServerMaxDataTransferBytes, client.ServerMaxMessageFds,
            client.TwinSocketEnabled, client.SocketBuffers.Send, client.SocketBuffers.Receive, info.Flags, regions, irqs, caps, state, stopCopy, migError);
    }

    private sealed record RegionRow(uint Index, string Name, ulong Size, uint Flags);

    private sealed record IrqRow(uint Index, string Name, uint Count, uint Flags);

    private sealed record InfoReport(string Device, string Version, int MaxDataTransferSize, int MaxMessageFds, bool TwinSocket, int SocketSendBuffer, int SocketReceiveBuffer, uint Flags,
        List<RegionRow> Regions, List<IrqRow> Irqs, string? MigrationCaps, string? MigrationState, ulong? StopCopySize, string? MigrationError)
    {
        public string ToText()
        {
            var sb = new StringBuilder();
            var ci = CultureInfo.InvariantCulture;
            sb.Append(ci, $"device: {Device}\n");
            sb.Append(ci, $"protocol: vfio-user {Version}, max_data_xfer_size {MaxDataTransferSize}, max_msg_fds {MaxMessageFds}, twin socket {(TwinSocket ? "yes" : "no")}\n");
            sb.Append(ci, $"our socket buffers: send {Units.FormatBytes(SocketSendBuffer)}, receive {Units.FormatBytes(SocketReceiveBuffer)} (as the kernel reports them)\n");
            sb.Append(ci, $"flags: 0x{Flags:x}{((Flags & 1) != 0 ? " RESET" : "")}{((Flags & 2) != 0 ? " PCI" : "")}\n");
            sb.Append(ci, $"regions: {Regions.Count}\n");
            foreach (var r in Regions)
                sb.Append(ci, $"  {r.Index} {r.Name,-6} size {r.Size,12} ({Units.FormatBytes(r.Size)}) flags 0x{r.Flags:x}{((r.Flags & 1) != 0 ? " READ" : "")}{((r.Flags & 2) != 0 ? " WRITE" : "")}{((r.Flags & 4) != 0 ? " MMAP" : "")}\n");
            sb.Append(ci, $"irqs: {Irqs.Count}\n");
            foreach (var q in Irqs)
                sb.Append(ci, $"  {q.Index} {q.Name,-6} count {q.Count} flags 0x{q.Flags:x}{((q.Flags & 1) != 0 ? " EVENTFD" : "")}\n");
            if (MigrationCaps is not null)
                sb.Append(ci, $"migration: caps {MigrationCaps}, state {MigrationState}, stop-copy size {StopCopySize?.ToString(ci) ?? "n/a"}\n");
            if (MigrationError is not null)
                sb.Append(ci, $"migration: {MigrationError}\n");
            return sb.ToString();
        }

        public InfoJson ToJson() => new(Device, "vfio-user " + Version, MaxDataTransferSize, MaxMessageFds, TwinSocket, SocketSendBuffer, SocketReceiveBuffer, Flags,
            [.. Regions.Select(r => new RegionJson(r.Index, r.Name, r.Size, r.Flags))], [.. Irqs.Select(q => new IrqJson(q.Index, q.Name, q.Count, q.Flags))],
            new MigrationInfoJson(MigrationCaps, MigrationState, StopCopySize, MigrationError));
    }
}
