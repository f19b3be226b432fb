using System.Globalization;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Cli;

/// <summary>
/// Parsing and printing of sizes, rates and durations. Sizes are binary as in QEMU: <c>K</c>/<c>KiB</c> = 1024,
/// <c>M</c>/<c>MiB</c>, <c>G</c>/<c>GiB</c>, <c>T</c>/<c>TiB</c>; a plain number is bytes. The SI spellings
/// <c>KB</c>, <c>MB</c>, <c>GB</c>, <c>TB</c> are rejected with an explanation, since they mean 1000ⁿ to some
/// readers and 1024ⁿ to others.
/// </summary>
internal static class Units
{
    private static readonly (string Suffix, long Multiplier)[] s_binary =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("K", 1L << 10), ("M", 1L << 20), ("G", 1L << 30), ("T", 1L << 40), ("B", 1),
    ];

    /// <summary>A byte count (<c>64MiB</c>, <c>64M</c>, <c>1.5GiB</c>, <c>4096</c>); EINVAL otherwise.</summary>
    public static long ParseBytes(string text, string what)
    {
        text = text.Trim();
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long plain))
            return plain;
        foreach (string si in (string[])["KB", "MB", "GB", "TB"])
        {
            if (text.EndsWith(si, StringComparison.OrdinalIgnoreCase) && text.Length > si.Length && char.IsAsciiDigit(text[^(si.Length + 1)]))
            {
                string number = text[..^si.Length];
                throw new VfioException(Errno.EINVAL, $"--{what}", $"'{text}' is ambiguous (1000 or 1024 per {si[0]}?): sizes are binary as in QEMU; write {number}{si[0]}iB or {number}{si[0]}, or a plain byte count");
            }
        }
        foreach (var (suffix, multiplier) in s_binary)
        {
            if (text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                && decimal.TryParse(text[..^suffix.Length], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value))
            {
                decimal bytes = value * multiplier;
                if (bytes > long.MaxValue)
                    break;
                if (bytes != decimal.Truncate(bytes))
                    throw new VfioException(Errno.EINVAL, $"--{what}", $"'{text}' is not a whole number of bytes");
                return (long)bytes;
            }
        }
        throw new VfioException(Errno.EINVAL, $"--{what}", $"'{text}' is not a size (write e.g. 64MiB, 1GiB or 4096; binary suffixes K, M, G, T as in QEMU)");
    }

    /// <summary>The sample device's REINIT trigger: a positive byte count of pre-copy data.</summary>
    public static long ParseReinitAfter(string text, string what)
    {
        long bytes = ParseBytes(text, what);
        return bytes > 0 ? bytes : throw new VfioException(Errno.EINVAL, $"--{what}", $"'{text}' is not a positive byte count (REINIT is raised once after that many pre-copy bytes)");
    }

    /// <summary>A device state size: a positive multiple of the sample device's 4 KiB page.</summary>
    public static long ParseDeviceSize(string text, string what)
    {
        long bytes = ParseBytes(text, what);
        int page = SampleDeviceOptions.Default.PageSize;
        if (bytes < page || bytes % page != 0)
            throw new VfioException(Errno.EINVAL, $"--{what}", $"'{text}' is {bytes} bytes; a device size must be a positive multiple of 4 KiB (e.g. 64MiB)");
        return bytes;
    }

    /// <summary>A rate in bytes per second (<c>16MiB/s</c>, <c>16MiB</c>, <c>0</c>).</summary>
    public static long ParseRate(string text, string what)
    {
        text = text.Trim();
        if (text.EndsWith("/s", StringComparison.Ordinal))
            text = text[..^2];
        return ParseBytes(text, what);
    }

    /// <summary>A duration with its unit: <c>300ms</c>, <c>2s</c>, <c>1.5m</c>, <c>500us</c>.</summary>
    public static TimeSpan ParseDuration(string text, string what)
    {
        text = text.Trim();
        (string suffix, double ms)[] units = [("ms", 1), ("us", 0.001), ("s", 1000), ("m", 60_000)];
        foreach (var (suffix, ms) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(text[..^suffix.Length], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double v)
                && v * ms < TimeSpan.MaxValue.TotalMilliseconds)
            {
                return TimeSpan.FromMilliseconds(v * ms);
            }
        }
        throw new VfioException(Errno.EINVAL, $"--{what}", $"'{text}' is not a duration (write e.g. 300ms, 2s or 1m)");
    }

    /// <summary>One of the four capability sets a device may offer: 0x1, 0x3, 0x5, 0x7 (STOP_COPY is mandatory).</summary>
    public static VfioMigrationFlags ParseCaps(string text)
        => MigrationStateMachine.TryParseCaps(text, out var caps) && IsDefined(caps)
            ? caps
            : throw new VfioException(Errno.EINVAL, "--caps", $"'{text}' is not a capability set (0x1 STOP_COPY, 0x3 +P2P, 0x5 +PRE_COPY, 0x7 all; STOP_COPY is mandatory)");

    /// <summary>True for 0x1, 0x3, 0x5 and 0x7.</summary>
    public static bool IsDefined(VfioMigrationFlags caps)
        => caps.HasFlag(VfioMigrationFlags.StopCopy)
            && (caps & ~(VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy)) == 0;

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static int ParseInt(string text, string what, int min, int max)
        => int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value) && value >= min && value <= max
            ? value
            : throw new VfioException(Errno.EINVAL, $"--{what}", string.Create(CultureInfo.InvariantCulture, $"'{text}' is not a whole number from {min} to {max}"));

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
                throw new VfioException(Errno.EINVAL, $"--{what}", $"'{name}' is not a fault (one of {string.Join(", ", SampleDeviceFaultNames.All)})");
            faults |= fault;
        }
        if (faults == SampleDeviceFaults.None && !text.Trim().Equals("none", StringComparison.OrdinalIgnoreCase))
            throw new VfioException(Errno.EINVAL, $"--{what}", "no fault named (write e.g. skip-enomsg or skip-enomsg+reuse-stream)");
        return faults;
    }

    /// <summary>Bytes for people: <c>61.0 MiB</c>.</summary>
    public static string FormatBytes(double bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (1L << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        >= 1L << 20 => (bytes / (1L << 20)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        >= 1L << 10 => (bytes / (1L << 10)).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        _ => bytes.ToString("0", CultureInfo.InvariantCulture) + " B",
    };

    /// <summary>Bytes as an option value that parses back to the same count: <c>64MiB</c>, <c>4096</c>.</summary>
    public static string FormatExact(long bytes)
    {
        foreach (var (suffix, multiplier) in s_binary.Take(4).Reverse())
        {
            if (bytes != 0 && bytes % multiplier == 0)
                return (bytes / multiplier).ToString(CultureInfo.InvariantCulture) + suffix;
        }
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
