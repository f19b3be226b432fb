using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace Vfio.Cli;

/// <summary>
/// Help that teaches: after System.CommandLine's usage and options, the address forms (for the root and every
/// command that takes an address) and each command's examples.
/// </summary>
internal static class CliHelp
{
    private sealed record Extras(string[] Examples, bool Addresses);

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Command, Extras> s_extras = [];

    /// <summary>Registers <paramref name="examples"/> for <paramref name="command"/>'s help; <paramref name="addresses"/> adds the address forms.</summary>
    public static T WithHelp<T>(this T command, bool addresses, params string[] examples)
        where T : Command
    {
        s_extras.AddOrUpdate(command, new Extras(examples, addresses));
        return command;
    }

    /// <summary>Replaces the root's help action (recursive, so every command's) with one that adds the sections.</summary>
    public static void Install(RootCommand root)
    {
        foreach (var option in root.Options)
        {
            if (option is HelpOption help && help.Action is HelpAction standard)
                help.Action = new ExtendedHelpAction(standard);
        }
    }

    /// <summary>The examples registered for <paramref name="command"/> (none: empty).</summary>
    public static IReadOnlyList<string> ExamplesOf(Command command) => s_extras.TryGetValue(command, out var extras) ? extras.Examples : [];

    /// <summary>True when <paramref name="action"/> prints help (it runs even when the rest of the line has errors).</summary>
    public static bool IsHelp(CommandLineAction? action) => action is ExtendedHelpAction or HelpAction;

    private sealed class ExtendedHelpAction(HelpAction standard) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            int result = standard.Invoke(parseResult);
            var output = parseResult.InvocationConfiguration.Output;
            var command = parseResult.CommandResult.Command;
            if (s_extras.TryGetValue(command, out var extras))
            {
                if (extras.Addresses)
                {
                    output.WriteLine("Addresses:");
                    foreach (var line in DeviceTransports.HelpLines)
                        output.WriteLine("  " + line);
                    output.WriteLine();
                }
                if (extras.Examples.Length > 0)
                {
                    output.WriteLine("Examples:");
                    foreach (var line in extras.Examples)
                        output.WriteLine("  " + line);
                    output.WriteLine();
                }
            }
            if (command is RootCommand)
            {
                output.WriteLine("Exit codes: 0 success, 1 failed, 2 usage, 3 verification mismatch, 4 held (docs/cli/conventions.md).");
                output.WriteLine();
            }
            return result;
        }
    }
}
