namespace Vfio.Sample;

/// <summary>The command-line names of <see cref="SampleDeviceFaults"/> (kebab case, e.g. <c>skip-enomsg</c>).</summary>
public static class SampleDeviceFaultNames
{
    private static readonly (string Name, SampleDeviceFaults Fault)[] s_names =
    [
        ("skip-enomsg", SampleDeviceFaults.SkipEnomsg),
        ("reuse-stream", SampleDeviceFaults.ReuseStream),
        ("accept-truncated", SampleDeviceFaults.AcceptTruncated),
        ("wrong-path", SampleDeviceFaults.WrongPath),
        ("bad-estimate", SampleDeviceFaults.BadEstimate),
        ("logging-no-validate", SampleDeviceFaults.LoggingNoValidate),
        ("logging-no-clear", SampleDeviceFaults.LoggingNoClear),
        ("no-eof", SampleDeviceFaults.NoEof),
        ("ignore-invalid", SampleDeviceFaults.IgnoreInvalid),
        ("error-settable", SampleDeviceFaults.ErrorSettable),
        ("same-state-stream", SampleDeviceFaults.SameStateStream),
        ("info-any-state", SampleDeviceFaults.InfoAnyState),
        ("initial-bytes-grow", SampleDeviceFaults.InitialBytesGrow),
        ("accept-corrupt", SampleDeviceFaults.AcceptCorrupt),
        ("refuse-arc", SampleDeviceFaults.RefuseArc),
        ("corrupt-load", SampleDeviceFaults.CorruptLoad),
    ];

    /// <summary>Every fault name, in declaration order.</summary>
    public static IReadOnlyList<string> All { get; } = [.. s_names.Select(n => n.Name)];

    /// <summary>Parses one name (case-insensitive); <c>none</c> is <see cref="SampleDeviceFaults.None"/>.</summary>
    public static bool TryParse(string name, out SampleDeviceFaults fault)
    {
        ArgumentNullException.ThrowIfNull(name);
        name = name.Trim();
        fault = SampleDeviceFaults.None;
        if (name.Equals("none", StringComparison.OrdinalIgnoreCase))
            return true;
        foreach (var (n, f) in s_names)
        {
            if (n.Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                fault = f;
                return true;
            }
        }
        return false;
    }

    /// <summary>The names of the set flags joined by <c>+</c>, or <c>none</c>.</summary>
    public static string Format(SampleDeviceFaults faults)
    {
        var set = s_names.Where(n => (faults & n.Fault) != 0).Select(n => n.Name).ToList();
        return set.Count == 0 ? "none" : string.Join('+', set);
    }
}
