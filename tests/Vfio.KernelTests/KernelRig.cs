using System.Globalization;
using Vfio.Kernel;
using Vfio.Migration;

[assembly: Xunit.v3.Parallelization(Mode = Xunit.Sdk.ParallelMode.None)]

namespace Vfio.KernelTests;

/// <summary>
/// The guest environment: the devices named by VFIO_KERNEL_DEVICES (comma-separated sysfs names; the rig's
/// two mdevs), the vfio_mig_test module parameters, the mdev type directory for extra instances, and
/// fsm-paths.csv. Nothing here skips: a missing piece fails the test with a message saying what is missing.
/// </summary>
internal static class KernelRig
{
    public const string ModuleName = "vfio_mig_test";
    public const string DefaultTypeDir = "/sys/class/mdev_bus/vfio_mig_test/mdev_supported_types/vfio_mig_test-1";

    /// <summary>The devices the rig created (at least two).</summary>
    public static IReadOnlyList<string> Devices
    {
        get
        {
            string? text = Environment.GetEnvironmentVariable("VFIO_KERNEL_DEVICES");
            Assert.False(string.IsNullOrWhiteSpace(text),
                "VFIO_KERNEL_DEVICES is not set: these tests run in the kernel guest rig (tests/Vfio.KernelTests/run-in-guest.sh), which names its two mdevs there");
            var names = text!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.True(names.Length >= 2, $"VFIO_KERNEL_DEVICES must name two devices (source and destination), got '{text}'");
            return names;
        }
    }

    /// <summary>The guest kernel release, e.g. <c>6.12.118+deb12-amd64</c>.</summary>
    public static string KernelRelease => File.ReadAllText("/proc/sys/kernel/osrelease").Trim();

    /// <summary>PRE_COPY, VFIO_MIG_GET_PRECOPY_INFO and MIG_DATA_SIZE exist from Linux 6.2 on.</summary>
    public static bool HasPreCopy
    {
        get
        {
            var parts = KernelRelease.Split('.', 3);
            return parts.Length >= 2 && int.TryParse(parts[0], CultureInfo.InvariantCulture, out int major)
                && int.TryParse(parts[1], CultureInfo.InvariantCulture, out int minor) && (major, minor).CompareTo((6, 2)) >= 0;
        }
    }

    /// <summary>
    /// True when the running kernel has no IOVA bitmap walker (no <c>iova_bitmap_alloc</c> in /proc/kallsyms):
    /// Debian's 6.12 is built without CONFIG_IOMMUFD_DRIVER, so its walker is an inline stub and the core answers
    /// every valid DMA_LOGGING_REPORT with EOPNOTSUPP before the driver is asked. On 6.1 the walker is part of vfio.
    /// </summary>
    public static bool LacksDirtyWalker => s_lacksDirtyWalker.Value;

    private static readonly Lazy<bool> s_lacksDirtyWalker = new(() =>
        !File.ReadLines("/proc/kallsyms").Any(line => line.Split((char[])[' ', '\t'], 4) is [_, _, "iova_bitmap_alloc", ..]));

    /// <summary>Skips (with the reason) on a kernel without PRE_COPY; the rig's 6.12 run does these tests.</summary>
    public static void RequirePreCopy()
    {
        if (!HasPreCopy)
            Assert.Skip($"Linux {KernelRelease} has no PRE_COPY, VFIO_MIG_GET_PRECOPY_INFO or MIG_DATA_SIZE (added in 6.2); the rig's 6.12 run covers this");
    }

    /// <summary>
    /// The two mtty devices (the kernel's own samples/vfio-mdev/mtty.c, type mtty-2) named by VFIO_MTTY_DEVICES.
    /// Skipped on a kernel without PRE_COPY (6.1's mtty has no migration); on 6.2+ a missing variable fails.
    /// </summary>
    public static IReadOnlyList<string> MttyDevices
    {
        get
        {
            if (!HasPreCopy)
                Assert.Skip($"no mtty in this guest: Linux {KernelRelease}'s mtty sample has no migration; the rig loads mtty on 6.12");
            string? text = Environment.GetEnvironmentVariable("VFIO_MTTY_DEVICES");
            Assert.False(string.IsNullOrWhiteSpace(text),
                $"VFIO_MTTY_DEVICES is not set on Linux {KernelRelease}: the rig builds mtty from linux-source and names its two mdevs there");
            var names = text!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.True(names.Length >= 2, $"VFIO_MTTY_DEVICES must name two devices, got '{text}'");
            return names;
        }
    }

    public static string TypeDir => Environment.GetEnvironmentVariable("VMT_TYPE_DIR") is { Length: > 0 } d ? d : DefaultTypeDir;

    public static string ParamPath(string name) => $"/sys/module/{ModuleName}/parameters/{name}";

    public static string ReadParam(string name) => File.ReadAllText(ParamPath(name)).Trim();

    public static void WriteParam(string name, string value) => File.WriteAllText(ParamPath(name), value);

    /// <summary>
    /// fsm-paths.csv: $VMT_FSM_CSV, else the repository's tests/fixtures/fsm-paths.csv, else shared/spec/fsm-paths.csv,
    /// searched upwards from the test assembly and from the working directory.
    /// </summary>
    public static string FsmCsvPath
    {
        get
        {
            if (Environment.GetEnvironmentVariable("VMT_FSM_CSV") is { Length: > 0 } env && File.Exists(env))
                return env;
            foreach (string start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            {
                for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                {
                    foreach (string candidate in new[] { Path.Combine(dir.FullName, "tests", "fixtures", "fsm-paths.csv"), Path.Combine(dir.FullName, "shared", "spec", "fsm-paths.csv") })
                    {
                        if (File.Exists(candidate))
                            return candidate;
                    }
                }
            }
            throw new FileNotFoundException("fsm-paths.csv not found: set VMT_FSM_CSV or keep the repository next to shared/spec");
        }
    }

    /// <summary>(caps, from, to, path) rows of fsm-paths.csv.</summary>
    public static IEnumerable<(string Caps, string From, string To, string Path)> FsmRows()
    {
        foreach (string line in File.ReadLines(FsmCsvPath).Skip(1))
        {
            var f = line.Split(',');
            if (f.Length == 4)
                yield return (f[0], f[1], f[2], f[3]);
        }
    }

    /// <summary>Opens a device, retrying briefly while a just-created group node appears in /dev/vfio.</summary>
    public static KernelMigrationDevice Open(string name, Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory = null)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return KernelMigrationDevice.Open(name, loggerFactory: loggerFactory);
            }
            catch (VfioException e) when (e.Errno == Errno.ENOENT && attempt < 50)
            {
                Thread.Sleep(20);
            }
        }
    }

    public static VfioMigrationState Parse(string name)
    {
        Assert.True(MigrationStateMachine.TryParse(name, out var state), $"bad state name {name}");
        return state;
    }
}

/// <summary>An extra mdev created for one test class with chosen caps, removed afterwards.</summary>
public sealed class TemporaryMdev : IDisposable
{
    public TemporaryMdev(uint caps)
    {
        Caps = caps;
        Name = Guid.NewGuid().ToString();
        string old = KernelRig.ReadParam("caps");
        try
        {
            KernelRig.WriteParam("caps", caps.ToString(CultureInfo.InvariantCulture));
            File.WriteAllText(Path.Combine(KernelRig.TypeDir, "create"), Name);
        }
        finally
        {
            KernelRig.WriteParam("caps", old);
        }
    }

    public uint Caps { get; }

    public string Name { get; }

    public void Dispose()
    {
        try
        {
            File.WriteAllText($"/sys/bus/mdev/devices/{Name}/remove", "1");
        }
        catch (IOException)
        {
            // Best effort: the guest is thrown away after the run.
        }
    }
}

/// <summary>A vfio_mig_test device with PRE_COPY (caps 0x5 or 0x7); none on a kernel before 6.2, whose tests skip.</summary>
public abstract class PreCopyMdev(uint caps) : IDisposable
{
    private readonly TemporaryMdev? _mdev = KernelRig.HasPreCopy ? new TemporaryMdev(caps) : null;

    public string Name
    {
        get
        {
            KernelRig.RequirePreCopy();
            return _mdev!.Name;
        }
    }

    public void Dispose()
    {
        _mdev?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A caps-0x5 device (STOP_COPY | PRE_COPY).</summary>
public sealed class Caps5Mdev() : PreCopyMdev(0x5);

/// <summary>A caps-0x7 device (STOP_COPY | P2P | PRE_COPY).</summary>
public sealed class Caps7Mdev() : PreCopyMdev(0x7);

/// <summary>A caps-0x1 device (STOP_COPY only).</summary>
public sealed class Caps1Mdev() : IDisposable
{
    public TemporaryMdev Mdev { get; } = new(0x1);

    public void Dispose() => Mdev.Dispose();
}

/// <summary>A caps-0x3 device (STOP_COPY | P2P).</summary>
public sealed class Caps3Mdev() : IDisposable
{
    public TemporaryMdev Mdev { get; } = new(0x3);

    public void Dispose() => Mdev.Dispose();
}
