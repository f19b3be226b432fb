using Vfio.Cli;

namespace Vfio.Tests.Cli;

public class RuntimeTuningTests
{
    private sealed class Settings
    {
        public Dictionary<string, string> Environment { get; } = [];

        public Dictionary<string, object?> Properties { get; } = [];

        public void Apply(params string[] args) =>
            RuntimeTuning.Apply(args, k => Environment.GetValueOrDefault(k), (k, v) => Environment[k] = v, (k, v) => Properties[k] = v);
    }

    [Theory]
    [InlineData("serve")]
    [InlineData("migrate")]
    public void Serve_and_migrate_stop_idle_workers_spinning_and_run_socket_completions_inline(string command)
    {
        var s = new Settings();
        s.Apply(command, "--json");
        Assert.Equal(0, s.Properties[RuntimeTuning.SpinLimitProperty]);
        Assert.Equal("1", s.Environment[RuntimeTuning.InlineCompletionsVariable]);
    }

    [Theory]
    [InlineData]
    [InlineData("send")]
    [InlineData("receive")]
    [InlineData("demo")]
    [InlineData("bench", "migrate")]
    [InlineData("--help", "serve")]
    public void Every_other_command_keeps_the_runtime_defaults(params string[] args)
    {
        var s = new Settings();
        s.Apply(args);
        Assert.Empty(s.Properties);
        Assert.Empty(s.Environment);
    }

    [Fact]
    public void Values_the_user_set_in_the_environment_are_kept()
    {
        var s = new Settings();
        s.Environment[RuntimeTuning.SpinLimitVariable] = "70";
        s.Environment[RuntimeTuning.InlineCompletionsVariable] = "0";
        s.Apply("migrate");
        Assert.Empty(s.Properties);
        Assert.Equal("0", s.Environment[RuntimeTuning.InlineCompletionsVariable]);
        Assert.Equal("70", s.Environment[RuntimeTuning.SpinLimitVariable]);
    }
}
