using System.CommandLine;
using Vfio.Cli;

namespace Vfio.Tests.Cli;

/// <summary>Help that teaches: every command has examples, the address forms where it takes one, and its docs page names every option.</summary>
public class CliHelpTests
{
    internal static IEnumerable<(string[] Path, Command Command)> Leaves(Command command, string[] path)
    {
        if (command.Subcommands.Count == 0)
            yield return (path, command);
        foreach (var sub in command.Subcommands)
        {
            foreach (var leaf in Leaves(sub, [.. path, sub.Name]))
                yield return leaf;
        }
    }

    public static TheoryData<string> Commands()
        => [.. Leaves(CliApp.Build(), []).Select(l => string.Join(' ', l.Path))];

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task Help_exits_0_with_examples_and_the_address_forms(string command)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await CliApp.RunAsync([.. command.Split(' '), "--help"], stdout, stderr, TestContext.Current.CancellationToken);
        Assert.Equal(0, exit);
        Assert.Empty(stderr.ToString());
        string help = stdout.ToString();
        Assert.Contains("Examples:", help, StringComparison.Ordinal);
        Assert.True(help.Split('\n').Count(l => l.StartsWith("  vfio-mig ", StringComparison.Ordinal)) >= 2, help);
        var leaf = Leaves(CliApp.Build(), []).Single(l => string.Join(' ', l.Path) == command).Command;
        bool takesAddress = leaf.Options.Any(o => o.HelpName == "ADDRESS") || leaf.Arguments.Any(a => a.HelpName == "ADDRESS");
        if (takesAddress)
            Assert.Contains("unix:PATH", help[help.IndexOf("Addresses:", StringComparison.Ordinal)..], StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void The_docs_name_every_option(string command)
    {
        var leaf = Leaves(CliApp.Build(), []).Single(l => string.Join(' ', l.Path) == command).Command;
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        string docs = string.Concat(Directory.GetFiles(Path.Combine(dir.FullName, "docs", "cli"), "*.md").Select(File.ReadAllText));
        foreach (var option in leaf.Options.Where(o => !o.Hidden && o.Name is not ("--help" or "-h" or "-?" or "--version")))
            Assert.True(docs.Contains(option.Name, StringComparison.Ordinal), $"docs/cli/*.md do not mention {option.Name} of vfio-mig {command}");
    }

    [Fact]
    public async Task No_arguments_prints_the_root_help_with_the_address_forms_and_exits_2()
    {
        var stdout = new StringWriter();
        int exit = await CliApp.RunAsync([], stdout, new StringWriter(), TestContext.Current.CancellationToken);
        Assert.Equal(2, exit);
        Assert.Contains("sample:[KEY=VALUE,...]", stdout.ToString(), StringComparison.Ordinal);
        Assert.Contains("tcp://HOST:PORT", stdout.ToString(), StringComparison.Ordinal);
    }
}
