using System.Diagnostics;
using System.Globalization;
using System.Text;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Tests.Uapi;

// spec §1.1, §1.3, §1.5, §1.7: the managed constants and layouts checked against real kernel uAPI headers
// by compiling C static_asserts with cc (the Tmds.LibC technique): the machine's <linux/vfio.h>
// (linux-libc-dev, 6.1 on Debian 12) and the uAPI vfio.h of every installed linux-headers-* package (the rig
// installs 6.12's, which has PRE_COPY, PRECOPY_INFO and MIG_DATA_SIZE). Items a header does not define are
// left out; minimum check counts keep the tests from passing vacuously; they skip only when cc or the
// header is missing.
public class KernelHeaderStaticAssertTests
{
    private const string HeaderPath = "/usr/include/linux/vfio.h";

    /// <summary>The uAPI vfio.h of the installed kernel header packages (e.g. linux-headers-6.12.N+deb12-common).</summary>
    internal static IReadOnlyList<string> KernelPackageHeaders()
        => Directory.Exists("/usr/src")
            ? Directory.GetDirectories("/usr/src", "linux-headers-*")
                .Select(d => Path.Combine(d, "include", "uapi", "linux", "vfio.h"))
                .Where(File.Exists)
                .Order(StringComparer.Ordinal)
                .ToList()
            : [];

    /// <summary>The newest installed uAPI header that has PRE_COPY (6.2+), or null.</summary>
    internal static string? PreCopyUapiHeader()
        => KernelPackageHeaders().LastOrDefault(h => File.ReadAllText(h).Contains("VFIO_MIG_GET_PRECOPY_INFO", StringComparison.Ordinal));

    internal const string NoPreCopyHeader = "no installed uAPI vfio.h with PRE_COPY (Linux 6.2+): linux-headers-6.12.*, which `bash tests/kernel/run-guest-tests.sh --prepare` with KERNEL=6.12 installs (scripts/test.sh does it first as root)";

    [Fact]
    public void ManagedUapi_MatchesInstalledLinuxVfioHeader_spec_1_7()
    {
        if (!File.Exists(HeaderPath))
            Assert.Skip($"{HeaderPath} is not installed");
        // Even a 6.1 header (no PRE_COPY, precopy info or data size) yields well over 40 checks.
        CompileChecks(HeaderPath, minimumChecks: 40, []);
    }

    [Fact]
    public void ManagedUapi_MatchesTheLinux612UapiHeader_PreCopyPrecopyInfoMigDataSizeDmaLogging_spec_1_7()
    {
        string? header = PreCopyUapiHeader();
        if (header is null)
            Assert.Skip(NoPreCopyHeader);
        CompileChecks(header, minimumChecks: 60,
        [
            "sizeof struct vfio_precopy_info", "struct vfio_precopy_info.dirty_bytes", "VFIO_MIG_GET_PRECOPY_INFO",
            "VFIO_MIGRATION_PRE_COPY", "VFIO_DEVICE_STATE_PRE_COPY", "VFIO_DEVICE_STATE_PRE_COPY_P2P",
            "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE", "sizeof struct vfio_device_feature_mig_data_size",
            "struct vfio_device_feature_mig_data_size.stop_copy_length",
            "sizeof struct vfio_device_feature_dma_logging_control", "struct vfio_device_feature_dma_logging_control.ranges",
            "sizeof struct vfio_device_feature_dma_logging_range", "sizeof struct vfio_device_feature_dma_logging_report",
            "struct vfio_device_feature_dma_logging_report.bitmap", "VFIO_DEVICE_FEATURE_DMA_LOGGING_START",
            "VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP", "VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT",
        ]);
    }

    // Generates the static_asserts for what `headerPath` defines, requires the named checks among them, and
    // compiles them with that header as <linux/vfio.h> (a kernel-package uAPI header needs __user defined away).
    private static void CompileChecks(string headerPath, int minimumChecks, string[] required)
    {
        string? cc = FindCompiler();
        if (cc is null)
            Assert.Skip("no C compiler (cc/gcc/clang) on PATH");

        string header = File.ReadAllText(headerPath);
        var c = new StringBuilder();
        c.Append("#include <stddef.h>\n#include <linux/vfio.h>\n");
        int checks = 0;

        void Size(string type, int size)
        {
            if (!header.Contains(type + " {", StringComparison.Ordinal))
                return;
            c.Append(CultureInfo.InvariantCulture, $"_Static_assert(sizeof({type}) == {size}, \"sizeof {type}\");\n");
            checks++;
        }

        void Offset(string type, string field, int offset)
        {
            if (!header.Contains(type + " {", StringComparison.Ordinal))
                return;
            c.Append(CultureInfo.InvariantCulture, $"_Static_assert(offsetof({type}, {field}) == {offset}, \"{type}.{field}\");\n");
            checks++;
        }

        void Value(string name, ulong value)
        {
            // Macros must be #defined by the header; enum constants must be declared (NAME = value).
            bool isMacro = System.Text.RegularExpressions.Regex.IsMatch(header, @"#define\s+" + name + @"\b");
            bool isEnum = System.Text.RegularExpressions.Regex.IsMatch(header, @"\b" + name + @"\s*=");
            if (!isMacro && !isEnum)
                return;
            c.Append(CultureInfo.InvariantCulture, $"_Static_assert((unsigned long long)({name}) == {value}ULL, \"{name}\");\n");
            checks++;
        }

        Size("struct vfio_device_feature", VfioDeviceFeature.Size);
        Offset("struct vfio_device_feature", "argsz", 0);
        Offset("struct vfio_device_feature", "flags", 4);
        Offset("struct vfio_device_feature", "data", 8);
        Size("struct vfio_device_feature_migration", VfioDeviceFeatureMigration.Size);
        Offset("struct vfio_device_feature_migration", "flags", 0);
        Size("struct vfio_device_feature_mig_state", VfioDeviceFeatureMigState.Size);
        Offset("struct vfio_device_feature_mig_state", "device_state", 0);
        Offset("struct vfio_device_feature_mig_state", "data_fd", 4);
        Size("struct vfio_precopy_info", VfioPrecopyInfo.Size);
        Offset("struct vfio_precopy_info", "argsz", 0);
        Offset("struct vfio_precopy_info", "flags", 4);
        Offset("struct vfio_precopy_info", "initial_bytes", 8);
        Offset("struct vfio_precopy_info", "dirty_bytes", 16);
        Size("struct vfio_device_feature_dma_logging_control", VfioDmaLoggingControl.Size);
        Offset("struct vfio_device_feature_dma_logging_control", "page_size", 0);
        Offset("struct vfio_device_feature_dma_logging_control", "num_ranges", 8);
        Offset("struct vfio_device_feature_dma_logging_control", "__reserved", 12);
        Offset("struct vfio_device_feature_dma_logging_control", "ranges", 16);
        Size("struct vfio_device_feature_dma_logging_range", VfioDmaLoggingRange.Size);
        Offset("struct vfio_device_feature_dma_logging_range", "iova", 0);
        Offset("struct vfio_device_feature_dma_logging_range", "length", 8);
        Size("struct vfio_device_feature_dma_logging_report", VfioDmaLoggingReport.Size);
        Offset("struct vfio_device_feature_dma_logging_report", "iova", 0);
        Offset("struct vfio_device_feature_dma_logging_report", "length", 8);
        Offset("struct vfio_device_feature_dma_logging_report", "page_size", 16);
        Offset("struct vfio_device_feature_dma_logging_report", "bitmap", 24);
        Size("struct vfio_device_feature_mig_data_size", VfioDeviceFeatureMigDataSize.Size);
        Offset("struct vfio_device_feature_mig_data_size", "stop_copy_length", 0);

        foreach (var field in typeof(VfioIoctl).GetFields())
        {
            if (field.IsLiteral && field.Name.StartsWith("VFIO_", StringComparison.Ordinal) && field.FieldType == typeof(uint))
                Value(field.Name, (uint)field.GetRawConstantValue()!);
        }

        Value("VFIO_DEVICE_FEATURE_MASK", (uint)VfioDeviceFeatureFlags.Mask);
        Value("VFIO_DEVICE_FEATURE_GET", (uint)VfioDeviceFeatureFlags.Get);
        Value("VFIO_DEVICE_FEATURE_SET", (uint)VfioDeviceFeatureFlags.Set);
        Value("VFIO_DEVICE_FEATURE_PROBE", (uint)VfioDeviceFeatureFlags.Probe);
        Value("VFIO_DEVICE_FEATURE_PCI_VF_TOKEN", (uint)VfioDeviceFeatureId.PciVfToken);
        Value("VFIO_DEVICE_FEATURE_MIGRATION", (uint)VfioDeviceFeatureId.Migration);
        Value("VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE", (uint)VfioDeviceFeatureId.MigDeviceState);
        Value("VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY", (uint)VfioDeviceFeatureId.LowPowerEntry);
        Value("VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP", (uint)VfioDeviceFeatureId.LowPowerEntryWithWakeup);
        Value("VFIO_DEVICE_FEATURE_LOW_POWER_EXIT", (uint)VfioDeviceFeatureId.LowPowerExit);
        Value("VFIO_DEVICE_FEATURE_DMA_LOGGING_START", (uint)VfioDeviceFeatureId.DmaLoggingStart);
        Value("VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP", (uint)VfioDeviceFeatureId.DmaLoggingStop);
        Value("VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT", (uint)VfioDeviceFeatureId.DmaLoggingReport);
        Value("VFIO_DEVICE_FEATURE_MIG_DATA_SIZE", (uint)VfioDeviceFeatureId.MigDataSize);
        Value("VFIO_DEVICE_FEATURE_BUS_MASTER", (uint)VfioDeviceFeatureId.BusMaster);
        Value("VFIO_DEVICE_FEATURE_DMA_BUF", (uint)VfioDeviceFeatureId.DmaBuf);
        Value("VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2", (uint)VfioDeviceFeatureId.MigPrecopyInfoV2);
        Value("VFIO_PRECOPY_INFO_REINIT", VfioPrecopyInfo.FlagReinit);
        Value("VFIO_MIGRATION_STOP_COPY", (ulong)VfioMigrationFlags.StopCopy);
        Value("VFIO_MIGRATION_P2P", (ulong)VfioMigrationFlags.P2P);
        Value("VFIO_MIGRATION_PRE_COPY", (ulong)VfioMigrationFlags.PreCopy);
        foreach (var state in Enum.GetValues<VfioMigrationState>())
            Value("VFIO_DEVICE_STATE_" + MigrationStateMachine.Name(state), (uint)state);

        Assert.True(checks >= minimumChecks, $"only {checks} checks were generated from {headerPath}");
        string generated = c.ToString();
        foreach (string name in required)
            Assert.True(generated.Contains($"\"{name}\")", StringComparison.Ordinal), $"{headerPath}: no check of {name}");

        string dir = Directory.CreateTempSubdirectory("vfio-uapi-").FullName;
        try
        {
            string file = Path.Combine(dir, "check.c");
            File.WriteAllText(file, generated);
            List<string> args = ["-std=c11", "-fsyntax-only", "-Werror", file];
            if (headerPath != HeaderPath)
            {
                Directory.CreateDirectory(Path.Combine(dir, "include", "linux"));
                File.Copy(headerPath, Path.Combine(dir, "include", "linux", "vfio.h"));
                args.InsertRange(0, ["-D__user=", "-I", Path.Combine(dir, "include")]);
            }
            var psi = new ProcessStartInfo(cc, args)
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using var p = Process.Start(psi)!;
            string stderr = p.StandardError.ReadToEnd();
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"{cc} rejected {checks} static_asserts against {headerPath}:\n{stderr}\n--- generated C ---\n{generated}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AWrongValue_IsRejectedByTheCompiler()
    {
        // Guards the check above against passing vacuously (e.g. a compiler that ignores _Static_assert).
        string? cc = FindCompiler();
        if (cc is null)
            Assert.Skip("no C compiler (cc/gcc/clang) on PATH");
        if (!File.Exists(HeaderPath))
            Assert.Skip($"{HeaderPath} is not installed");
        string dir = Directory.CreateTempSubdirectory("vfio-uapi-").FullName;
        try
        {
            string file = Path.Combine(dir, "bad.c");
            File.WriteAllText(file, "#include <linux/vfio.h>\n_Static_assert(VFIO_DEVICE_FEATURE == 0x3B76, \"wrong on purpose\");\n");
            using var p = Process.Start(new ProcessStartInfo(cc, ["-std=c11", "-fsyntax-only", file]) { RedirectStandardError = true })!;
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.NotEqual(0, p.ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string? FindCompiler()
    {
        foreach (string name in new[] { "cc", "gcc", "clang" })
        {
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = Path.Combine(dir, name);
                if (File.Exists(candidate))
                    return candidate;
            }
        }
        return null;
    }
}
