using System.Globalization;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Cli;

/// <summary>Parsing and printing of sizes (64MiB, 1GiB, 4096), rates (16MiB/s) and durations (300ms, 2s).</summary>
internal static class Units
{
    public static long ParseBytes(string text, string what)
    {
        text = text.Trim();
        (string suffix, long mul)[] units = [("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1000), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1)];
        foreach (var (suffix, mul) in units)
        {
            if (text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                && double.TryParse(text[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0)
                return checked((long)(v * mul));
        }
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long plain))
            return plain;
        throw new VfioException(Errno.EINVAL, $"parse --{what}", $"'{text}' is not a size (write e.g. 64MiB, 1GiB or 4096)");
    }

    public static long ParseRate(string text, string what)
    {
        text = text.Trim();
        if (text.EndsWith("/s", StringComparison.Ordinal))
            text = text[..^2];
        return ParseBytes(text, what);
    }

    public static TimeSpan ParseDuration(string text, string what)
    {
        text = text.Trim();
        (string suffix, double ms)[] units = [("ms", 1), ("us", 0.001), ("s", 1000), ("m", 60_000)];
        foreach (var (suffix, ms) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(text[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0)
                return TimeSpan.FromMilliseconds(v * ms);
        }
        throw new VfioException(Errno.EINVAL, $"parse --{what}", $"'{text}' is not a duration (write e.g. 300ms or 2s)");
    }

    public static VfioMigrationFlags ParseCaps(string text)
        => MigrationStateMachine.TryParseCaps(text, out var caps)
            ? caps
            : throw new VfioException(Errno.EINVAL, "parse --caps", $"'{text}' is not a capability mask (write 0x1, 0x3, 0x5 or 0x7)");

    /// <summary>
    /// Parses sample-device fault names joined by <c>+</c> (e.g. <c>skip-enomsg+reuse-stream</c>); shared by
    /// <c>sample:fault=…</c> and <c>vfio-mig serve --fault NAME</c>.
    /// </summary>
    public static SampleDeviceFaults ParseFaults(string text, string what)
    {
        var faults = SampleDeviceFaults.None;
        foreach (var name in text.Split('+', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!SampleDeviceFaultNames.TryParse(name, out var fault))
                throw new VfioException(Errno.EINVAL, $"parse --{what}", $"'{name}' is not a fault (one of {string.Join(", ", SampleDeviceFaultNames.All)})");
            faults |= fault;
        }
        if (faults == SampleDeviceFaults.None && !text.Trim().Equals("none", StringComparison.OrdinalIgnoreCase))
            throw new VfioException(Errno.EINVAL, $"parse --{what}", "no fault named (write e.g. skip-enomsg or skip-enomsg+reuse-stream)");
        return faults;
    }

    public static string FormatBytes(double bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (1L << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        >= 1L << 20 => (bytes / (1L << 20)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        >= 1L << 10 => (bytes / (1L << 10)).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        _ => bytes.ToString("0", CultureInfo.InvariantCulture) + " B",
    };
}
