using System.CommandLine;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Cli;

/// <summary>
/// <c>--precopy auto|on|off</c> for the commands that run a migration source.
/// </summary>
/// <remarks>
/// vfio-user has no PRECOPY_INFO (spec §7.1). A server that also answers MIG_DATA_SIZE with EINVAL, as
/// libvfio-user does (spec §1.1), leaves the engine no estimate to plan pre-copy rounds with. libvfio-user's
/// <c>samples/server</c> moreover treats its pre-copy data as disposable: its destination accepts only the
/// stop-copy stream (BAR1 ‖ BAR0, spec §7.5, §11 step 12), so shipping the pre-copy bytes as well makes the
/// destination refuse the rest of the stream. <c>auto</c> therefore skips pre-copy for such a source. Skipping
/// pre-copy is always correct; it only lengthens the downtime.
/// </remarks>
internal static class PreCopyChoice
{
    public static Option<string> Create()
    {
        var option = new Option<string>("--precopy")
        {
            Description = "Pre-copy while the source runs: auto (skipped for a vfio-user source without MIG_DATA_SIZE, e.g. libvfio-user), on, off",
            DefaultValueFactory = _ => "auto",
        };
        option.AcceptOnlyFromAmong("auto", "on", "off");
        return option;
    }

    /// <summary>Sets <see cref="MigrationOptions.UsePreCopy"/>; writes a note to <paramref name="notes"/> when <c>auto</c> skips pre-copy.</summary>
    public static async Task<MigrationOptions> ApplyAsync(MigrationOptions options, string mode, IVfioMigrationDevice source, TextWriter? notes, CancellationToken cancellationToken)
    {
        var (use, note) = await ResolveAsync(mode, source, cancellationToken).ConfigureAwait(false);
        if (note is not null)
            notes?.WriteLine("note: " + note);
        return options with { UsePreCopy = use };
    }

    /// <summary>Whether the engine should pre-copy, and a note for the user when <c>auto</c> chose not to.</summary>
    public static async Task<(bool Use, string? Note)> ResolveAsync(string mode, IVfioMigrationDevice source, CancellationToken cancellationToken)
    {
        if (mode == "off")
            return (false, null);
        if (mode == "on" || source is not IPreCopyAdvice advice)
            return (true, null);
        string? reason = await advice.ReasonToSkipPreCopyAsync(cancellationToken).ConfigureAwait(false);
        return (reason is null, reason);
    }
}
