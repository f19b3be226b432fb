using System.CommandLine;
using Vfio.Net;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig token new</c>: makes the pre-shared token that <c>send</c> and <c>receive</c> use with <c>--token-file</c>.</summary>
internal static class TokenCommand
{
    public static Command Create()
    {
        var output = new Option<string?>("--output", "-o") { Description = "Write the token to this new file (created with mode 0600; an existing file is never overwritten). Without it the token goes to stdout" };
        var json = CliOptions.Json();
        var create = new Command("new", "Make a new random 256-bit migration token (the only kind --token-file accepts).") { output, json };
        create.WithHelp(addresses: false,
            "vfio-mig token new --output token.txt     # then copy token.txt to the other host",
            "vfio-mig token new                        # to stdout (a file you store it in must be mode 0600)",
            "vfio-mig token new --output token.txt --json");
        create.SetAction(parse =>
        {
            var token = NetToken.New();
            string? path = parse.GetValue(output);
            if (path is not null)
            {
                token.WriteNewFile(path);
                Console.Error.WriteLine($"vfio-mig token: wrote a new token to {path} (mode 0600); copy it to the other host with the same care");
            }
            if (parse.GetValue(json))
                CliJsonContext.Write(Console.Out, new TokenJson(true, path is null ? token.Format() : null, path), CliJsonContext.Default.TokenJson);
            else if (path is null)
                Console.WriteLine(token.Format());
            return ExitCodes.Success;
        });
        return new Command("token", "Pre-shared tokens for send/receive.") { create };
    }
}
