using Vfio.Migration;

namespace Vfio.Tests.TestSupport;

/// <summary>Finds the shared spec folder (X/shared/spec beside the repository checkout X/main) and common data.</summary>
internal static class SpecFiles
{
    public static readonly VfioMigrationFlags[] DefinedCaps =
    [
        VfioMigrationFlags.StopCopy,
        VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P,
        VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy,
        VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy,
    ];

    public static readonly VfioMigrationState[] AllStates = Enum.GetValues<VfioMigrationState>();

    /// <summary>The path of <c>shared/spec/fsm-paths.csv</c>; throws (the test fails) when it cannot be found.</summary>
    public static string FsmPathsCsv => Find(Path.Combine("shared", "spec", "fsm-paths.csv"));

    public static string Find(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate))
                return candidate;
        }
        throw new FileNotFoundException($"{relative} not found in any parent of {AppContext.BaseDirectory} (the repo is expected at X/main with X/shared beside it)");
    }
}
