using System.Diagnostics;
using Vfio.Migration;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Fsm;

// spec §2.8: fsm-paths.csv is the reference for every (caps, from, to) request.
public class FsmPathsCsvTests
{
    private static string[] ReadCsvLines()
    {
        string text = File.ReadAllText(SpecFiles.FsmPathsCsv);
        Assert.EndsWith("\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\r", text, StringComparison.Ordinal);
        return text[..^1].Split('\n');
    }

    [Fact]
    public void EveryRow_EqualsGetPath_spec_2_8()
    {
        var lines = ReadCsvLines();
        Assert.Equal(257, lines.Length);
        Assert.Equal("caps,from,to,path", lines[0]);
        int row = 1;
        foreach (var caps in SpecFiles.DefinedCaps)
        {
            foreach (var from in SpecFiles.AllStates)
            {
                foreach (var to in SpecFiles.AllStates)
                {
                    var cells = lines[row].Split(',');
                    Assert.Equal(4, cells.Length);
                    Assert.Equal(MigrationStateMachine.FormatCaps(caps), cells[0]);
                    Assert.Equal(MigrationStateMachine.Name(from), cells[1]);
                    Assert.Equal(MigrationStateMachine.Name(to), cells[2]);
                    Assert.True(
                        cells[3] == MigrationStateMachine.GetPath(from, to, caps).ToString(),
                        $"row {row} ({lines[row]}): GetPath gives {MigrationStateMachine.GetPath(from, to, caps)}");
                    row++;
                }
            }
        }
    }

    [Fact]
    public void RowCategoryCounts_Are_91_25_56_28_56_spec_2_8()
    {
        var fromCsv = new Dictionary<string, int>();
        foreach (var line in ReadCsvLines().Skip(1))
        {
            string path = line.Split(',')[3];
            string category = path switch
            {
                "!EINVAL" => "rejected",
                "!EINVAL(WARN)" => "warn",
                "n/a" => "n/a",
                _ when path.Contains('>', StringComparison.Ordinal) => "arcs",
                _ => "same",
            };
            fromCsv[category] = fromCsv.GetValueOrDefault(category) + 1;
        }

        var fromCode = new Dictionary<MigrationPathKind, int>();
        foreach (var caps in SpecFiles.DefinedCaps)
        {
            foreach (var from in SpecFiles.AllStates)
            {
                foreach (var to in SpecFiles.AllStates)
                {
                    var kind = MigrationStateMachine.GetPath(from, to, caps).Kind;
                    fromCode[kind] = fromCode.GetValueOrDefault(kind) + 1;
                }
            }
        }

        Assert.Equal(91, fromCsv["arcs"]);
        Assert.Equal(25, fromCsv["same"]);
        Assert.Equal(56, fromCsv["rejected"]);
        Assert.Equal(28, fromCsv["warn"]);
        Assert.Equal(56, fromCsv["n/a"]);
        Assert.Equal(91, fromCode[MigrationPathKind.Arcs]);
        Assert.Equal(25, fromCode[MigrationPathKind.Same]);
        Assert.Equal(56, fromCode[MigrationPathKind.Rejected]);
        Assert.Equal(28, fromCode[MigrationPathKind.RejectedInError]);
        Assert.Equal(56, fromCode[MigrationPathKind.NotApplicable]);
    }

    [Fact]
    public async Task CliPathAll_OutputEqualsTheCsvByteForByte_spec_2_8()
    {
        // Runs the built vfio-mig.dll (copied beside the test assembly) as a child process.
        string dll = Path.Combine(AppContext.BaseDirectory, "vfio-mig.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing");
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
        var psi = new ProcessStartInfo(dotnet, [dll, "path", "--all", "--caps", "0x1,0x3,0x5,0x7", "--format", "csv"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = System.Text.Encoding.ASCII,
        };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        string stdout = await p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        await p.WaitForExitAsync(TestContext.Current.CancellationToken);
        Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}: {await stderr}");
        byte[] expected = File.ReadAllBytes(SpecFiles.FsmPathsCsv);
        Assert.Equal(expected, System.Text.Encoding.ASCII.GetBytes(stdout));
    }
}
