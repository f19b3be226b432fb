using System.Text.RegularExpressions;
using Vfio.Migration;

namespace Vfio.IntegrationTests;

/// <summary>
/// Host-to-host migrations (<c>send</c> → <c>receive</c> over loopback TCP, token auth, between two <c>serve</c>
/// processes, each host with its own state directory: <see cref="ServedPair"/>): kill -9 of either process at each
/// checkpoint of the commit protocol (docs/commit-protocol.md), and a receiver that ends held. After each: never both
/// running, nothing lost; the commands the surviving side printed bring exactly one copy back with the source's
/// state; the next migration succeeds. About 15 s per trial.
/// </summary>
public sealed partial class SendReceiveKillTests
{
    private static TimeSpan Deadline => ServedPair.Deadline;

    [Theory]
    [InlineData("send", "precopy", "aborted")]
    [InlineData("send", "stopcopy", "aborted")]
    [InlineData("send", "started", "committed")]
    [InlineData("receive", "loaded", "aborted")]
    [InlineData("receive", "committed", "committed")]
    public async Task Killed_at_each_phase_the_printed_commands_bring_back_exactly_one_copy_and_the_next_migration_succeeds(string killed, string phase, string decision)
    {
        using var pair = await ServedPair.StartAsync();
        string token = pair.NewTokenFile();
        string[] pause = ["--pause-at", phase];
        using var receive = await ReceiveAsync(pair.B, pair.DestinationState, token, killed == "receive" ? pause : []);
        using var send = Send(pair.A, Port(receive), pair.SourceState, token, killed == "send" ? pause : []);
        var (victim, survivor) = killed == "send" ? (send, receive) : (receive, send);
        await victim.WaitForOutputAsync("paused at " + phase, Deadline);
        string id = ServedPair.IdIn(send.Output);
        victim.Signal("KILL");
        await victim.WaitOrExplainAsync(Deadline);
        int rc = await survivor.WaitOrExplainAsync(Deadline);
        await pair.AssertNeverBothAndNothingLostAsync();

        if (killed == "send")
        {
            // The receiver decided; it says what settles the source it can no longer reach.
            Assert.True(rc == 1, $"receive exited {rc}; stderr: {receive.Error}");
            Assert.Contains($"hint: on the sending host: vfio-mig resolve {id} --decision {decision}", receive.Error, StringComparison.Ordinal);
            using (await ServedPair.RunAsync(0, [.. ServedPair.ResolveCommandIn(receive.Error, "hint: on the sending host: ", id), "--state-dir", pair.SourceState]))
            {
            }
        }
        else
        {
            // The sender is held (exit 4): its source stopped with its state, and the two commands that resolve it.
            Assert.True(rc == 4, $"send exited {rc}; stderr: {send.Error}");
            Assert.Contains($"vfio-mig send: source unix:{pair.A}: held in STOP_COPY", send.Error, StringComparison.Ordinal);
            Assert.Contains($"vfio-mig send: migration {id} is HELD", send.Error, StringComparison.Ordinal);
            Assert.Contains($"hint: on the receiving host: vfio-mig resolve {id} ", send.Error, StringComparison.Ordinal);
            string here = ThenHere().Match(send.Error).Groups[1].Value;
            Assert.Equal($"resolve {id} --state-dir {pair.SourceState} --decision committed|aborted", here);

            using var destination = await ServedPair.RunAsync(0, "resolve", id, "--state-dir", pair.DestinationState);
            Assert.Contains($"migration {id}: {decision}", destination.Output, StringComparison.Ordinal);
            Assert.Contains($"on the source host, run: vfio-mig resolve {id} --decision {decision}", destination.Output, StringComparison.Ordinal);
            using (await ServedPair.RunAsync(0, [.. here.Replace("committed|aborted", decision, StringComparison.Ordinal).Split(' ')]))
            {
            }
        }
        bool committed = decision == "committed";
        await pair.AssertExactlyOneRunsAsync(committed);
        await NextMigrationSucceedsAsync(pair, token, committed);
    }

    [Fact]
    public async Task A_held_receiver_exits_4_names_its_device_state_and_the_resolve_command_that_starts_it()
    {
        using var pair = await ServedPair.StartAsync();
        string token = pair.NewTokenFile();
        using var receive = await ReceiveAsync(pair.B, pair.DestinationState, token, ["--inject-fault", "start"]);
        using var send = Send(pair.A, Port(receive), pair.SourceState, token, []);
        int receiveRc = await receive.WaitOrExplainAsync(Deadline);
        int sendRc = await send.WaitOrExplainAsync(Deadline);
        string id = ServedPair.IdIn(send.Output);

        Assert.True(receiveRc == 4, $"receive exited {receiveRc}; stderr: {receive.Error}");
        Assert.Contains($"vfio-mig receive: destination unix:{pair.B}: held in STOP", receive.Error, StringComparison.Ordinal);
        Assert.Contains($"vfio-mig receive: migration {id} is HELD", receive.Error, StringComparison.Ordinal);
        Assert.Contains($"hint: resolve it with: vfio-mig resolve {id} --state-dir {pair.DestinationState}", receive.Error, StringComparison.Ordinal);
        // The commit was recorded before the start failed: the sender fails (exit 1: nothing is held on its host) and
        // its source stays stopped.
        Assert.True(sendRc == 1, $"send exited {sendRc}; stderr: {send.Error}");
        Assert.Contains($"the migration was committed before this failure", send.Error, StringComparison.Ordinal);
        Assert.Contains($"source device unix:{pair.A} is STOP", send.Error, StringComparison.Ordinal);
        await pair.AssertNeverBothAndNothingLostAsync();
        Assert.NotEqual(VfioMigrationState.Running, await ServedPair.StateAsync(pair.B));

        using (var resolve = await ServedPair.RunAsync(0, ServedPair.ResolveCommandIn(receive.Error, "hint: resolve it with: ", id)))
            Assert.Contains($"migration {id}: committed", resolve.Output, StringComparison.Ordinal);
        await pair.AssertExactlyOneRunsAsync(committed: true);
        await NextMigrationSucceedsAsync(pair, token, committed: true);
    }

    private static async Task<TestSupport.CliProcess> ReceiveAsync(string into, string stateDir, string token, string[] extra)
    {
        var receive = new TestSupport.CliProcess(["receive", "--listen", "127.0.0.1:0", "--into", "unix:" + into, "--token-file", token, "--state-dir", stateDir, .. extra]);
        await receive.WaitForOutputAsync("listening on", Deadline);
        return receive;
    }

    private static TestSupport.CliProcess Send(string from, int port, string stateDir, string token, string[] extra)
        => new(["send", "--from", "unix:" + from, "--to", $"tcp://127.0.0.1:{port}", "--token-file", token, "--state-dir", stateDir, .. extra]);

    private static int Port(TestSupport.CliProcess receive) => int.Parse(ListeningPort().Match(receive.Output).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    // The copy that runs migrates back into the other, each host with its own records (B's host sends when committed).
    private static async Task NextMigrationSucceedsAsync(ServedPair pair, string token, bool committed)
    {
        var (from, fromState, to, toState) = committed ? (pair.B, pair.DestinationState, pair.A, pair.SourceState) : (pair.A, pair.SourceState, pair.B, pair.DestinationState);
        using var receive = await ReceiveAsync(to, toState, token, []);
        using var send = Send(from, Port(receive), fromState, token, []);
        int sendRc = await send.WaitOrExplainAsync(TimeSpan.FromMinutes(2));
        int receiveRc = await receive.WaitOrExplainAsync(TimeSpan.FromMinutes(2));
        Assert.True(sendRc == 0 && receiveRc == 0, $"the next migration: send exited {sendRc}, receive {receiveRc}; send stderr: {send.Error} receive stderr: {receive.Error}");
        Assert.Contains("verified: destination matches source", send.Output, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"listening on [^ ]*:(\d+) ")]
    private static partial Regex ListeningPort();

    [GeneratedRegex(@"hint: then here: vfio-mig (resolve [^\n(]*?) \(")]
    private static partial Regex ThenHere();
}
