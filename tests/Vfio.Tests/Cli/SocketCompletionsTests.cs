using Vfio.Cli;

namespace Vfio.Tests.Cli;

public class SocketCompletionsTests
{
    [Fact]
    public void Serve_and_migrate_ask_for_inline_completions_when_the_environment_is_silent()
    {
        var env = new Dictionary<string, string>();
        SocketCompletions.PreferInline(k => env.GetValueOrDefault(k), (k, v) => env[k] = v);
        Assert.Equal("1", env[SocketCompletions.InlineVariable]);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1")]
    [InlineData("")]
    public void A_value_the_user_set_is_kept(string value)
    {
        var env = new Dictionary<string, string> { [SocketCompletions.InlineVariable] = value };
        SocketCompletions.PreferInline(k => env.GetValueOrDefault(k), (k, v) => env[k] = v);
        Assert.Equal(value, env[SocketCompletions.InlineVariable]);
    }
}
