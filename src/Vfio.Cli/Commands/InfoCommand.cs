using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
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
        var device = new Argument<string?>("device") { Description = "unix:PATH (a vfio-user server), vfio:NAME (a kernel VFIO device) or sample:[options] (in-process, served over a socketpair)", Arity = ArgumentArity.ZeroOrOne };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var list = new Option<bool>("--list") { Description = "List the VFIO devices found in sysfs (mdevs and vfio-bound PCI devices)" };
        var command = new Command("info", "Print a device's info, regions, IRQs and migration capabilities.") { device, json, list };
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                if (parse.GetValue(list))
                    return ListKernelDevices();
                string? text = parse.GetValue(device);
                if (text is null)
                {
                    Console.Error.WriteLine("EINVAL: give a device address (unix:PATH, vfio:NAME, sample:[options]) or --list");
                    return 2;
                }
                var address = DeviceAddress.Parse(text);
                if (address.Scheme == "vfio")
                {
                    await using var kernel = KernelMigrationDevice.Open(address.Target);
                    var described = kernel.Describe();
                    Console.Out.Write(parse.GetValue(json) ? KernelJson(described) : described.ToString());
                    return 0;
                }
                var report = address.Scheme switch
                {
                    "unix" => await QueryUnixAsync(address, cancellationToken).ConfigureAwait(false),
                    "sample" => await QuerySampleAsync(address, cancellationToken).ConfigureAwait(false),
                    _ => throw new VfioException(Errno.EOPNOTSUPP, $"info {address}", $"the {address.Scheme}: transport is not available in this build"),
                };
                Console.Out.Write(parse.GetValue(json) ? report.ToJson() : report.ToText());
                return 0;
            }
            catch (VfioException ex)
            {
                Console.Error.WriteLine(ex.Message);
                return 1;
            }
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

    private static string KernelJson(KernelDeviceReport r)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("device", "vfio:" + r.Entry.Name);
            w.WriteString("bus", r.Entry.Bus.ToString().ToLowerInvariant());
            w.WriteString("iommu", r.IommuType == 3 ? "type1v2" : "type1");
            w.WriteNumber("flags", r.Info.Flags);
            w.WriteStartArray("regions");
            foreach (var g in r.Regions)
            {
                w.WriteStartObject();
                w.WriteNumber("index", g.Index);
                w.WriteNumber("size", g.Size);
                w.WriteNumber("offset", g.Offset);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("migration");
            if (r.Capabilities is { } caps)
                w.WriteString("caps", MigrationStateMachine.FormatCaps(caps));
            if (r.State is { } st)
                w.WriteString("state", MigrationStateMachine.Name(st));
            if (r.MigrationError is not null)
                w.WriteString("error", r.MigrationError);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }

    private static async Task<InfoReport> QueryUnixAsync(DeviceAddress address, CancellationToken cancellationToken)
    {
        await using var client = await VfioUserClient.ConnectAsync(address.Target, null, cancellationToken).ConfigureAwait(false);
        return await QueryAsync(client, address.ToString(), cancellationToken).ConfigureAwait(false);
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
        var info = await client.GetDeviceInfoAsync(cancellationToken).ConfigureAwait(false);
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
        return new InfoReport(name, $"{ProtocolLimits.VersionMajor}.{client.ServerMinor}", client.ServerMaxDataTransferSize, client.ServerMaxMessageFds,
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

        public string ToJson()
        {
            using var ms = new MemoryStream();
            using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteString("device", Device);
                w.WriteString("protocol", "vfio-user " + Version);
                w.WriteNumber("max_data_xfer_size", MaxDataTransferSize);
                w.WriteNumber("max_msg_fds", MaxMessageFds);
                w.WriteBoolean("twin_socket", TwinSocket);
                w.WriteNumber("socket_send_buffer", SocketSendBuffer);
                w.WriteNumber("socket_receive_buffer", SocketReceiveBuffer);
                w.WriteNumber("flags", Flags);
                w.WriteStartArray("regions");
                foreach (var r in Regions)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", r.Index);
                    w.WriteString("name", r.Name);
                    w.WriteNumber("size", r.Size);
                    w.WriteNumber("flags", r.Flags);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("irqs");
                foreach (var q in Irqs)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", q.Index);
                    w.WriteString("name", q.Name);
                    w.WriteNumber("count", q.Count);
                    w.WriteNumber("flags", q.Flags);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartObject("migration");
                if (MigrationCaps is not null)
                    w.WriteString("caps", MigrationCaps);
                if (MigrationState is not null)
                    w.WriteString("state", MigrationState);
                if (StopCopySize is { } s)
                    w.WriteNumber("stop_copy_size", s);
                if (MigrationError is not null)
                    w.WriteString("error", MigrationError);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
        }
    }
}
