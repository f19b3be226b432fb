using Vfio.Conformance;

namespace Vfio.Tests.Conformance;

public class ConformanceDocsTests
{
    private static string RepoFile(string relative)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        return Path.Combine(dir.FullName, relative);
    }

    [Fact]
    public void ConformanceDoc_ListsEveryRuleWithItsSpecSection()
    {
        var rows = File.ReadAllLines(RepoFile("docs/conformance.md")).Where(l => l.StartsWith("| `", StringComparison.Ordinal)).ToList();

        foreach (var rule in ConformanceCatalog.Rules)
        {
            var row = rows.FirstOrDefault(l => l.StartsWith($"| `{rule.Id}` | {rule.Spec} |", StringComparison.Ordinal));
            Assert.True(row is not null, $"docs/conformance.md has no row '| `{rule.Id}` | {rule.Spec} |'");
        }
    }

    [Fact]
    public void ConformanceDoc_ListsEveryFault()
    {
        string text = File.ReadAllText(RepoFile("docs/conformance.md"));

        foreach (var name in Vfio.Sample.SampleDeviceFaultNames.All)
            Assert.Contains($"| `{name}` |", text, StringComparison.Ordinal);
    }
}
