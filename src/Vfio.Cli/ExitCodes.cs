namespace Vfio.Cli;

/// <summary>
/// The exit codes of every <c>vfio-mig</c> command (docs/cli/conventions.md, "Exit codes"). A command never
/// invents another; a new outcome that needs its own code is added here and to that table.
/// </summary>
internal static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Success = 0;

    /// <summary>The operation failed (or, for <c>check</c>, the device is not conformant). No device is held:
    /// every device the command touched is RUNNING where it was, or reset, and the command said which.</summary>
    public const int Failed = 1;

    /// <summary>Bad arguments or input (a parse error, an out-of-range value, a malformed address); nothing was done.</summary>
    public const int Usage = 2;

    /// <summary>The migration ran but verification found the destination's state differs from the source's.</summary>
    public const int VerificationMismatch = 3;

    /// <summary>A migration ended <em>held</em>: the outcome could not be known, so neither copy runs and the
    /// state is intact on the side that holds it. The command printed the one command that resolves it
    /// (<c>vfio-mig resolve …</c>).</summary>
    public const int Held = 4;
}
