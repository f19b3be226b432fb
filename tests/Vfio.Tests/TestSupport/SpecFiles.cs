using Vfio.Migration;

namespace Vfio.Tests.TestSupport;

/// <summary>Finds test fixtures in the repository (tests/fixtures) and common data.</summary>
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

    /// <summary>The path of <c>tests/fixtures/fsm-paths.csv</c> (see tests/fixtures/README.md); throws (the test fails) when it cannot be found.</summary>
    public static string FsmPathsCsv => Find(Path.Combine("tests", "fixtures", "fsm-paths.csv"));

    public static string Find(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate))
                return candidate;
        }
        throw new FileNotFoundException($"{relative} not found in any parent of {AppContext.BaseDirectory} (it is part of the repository)");
    }
}
