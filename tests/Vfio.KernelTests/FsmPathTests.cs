using Vfio.Device;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>
/// Every (from, to) request of fsm-paths.csv for the driver's caps, against the real kernel: the device is
/// reset (RUNNING), driven to <c>from</c>, then <c>to</c> is requested. Success rows must reach <c>to</c>,
/// return a data fd exactly when the last arc opens a session, and terminate an open data fd when the path
/// ends its session; <c>!EINVAL</c> rows must fail with EINVAL and leave the state unchanged.
/// Rows whose <c>from</c> is ERROR are not reachable (the driver never enters ERROR) and <c>n/a</c> rows
/// cannot exist; both are excluded from the data, not skipped.
/// </summary>
public abstract class FsmPathTestsBase
{
    protected static TheoryData<string, string, string> Rows(string caps)
    {
        var data = new TheoryData<string, string, string>();
        foreach (var row in KernelRig.FsmRows())
        {
            if (row.Caps == caps && row.From != "ERROR" && row.Path != "n/a")
                data.Add(row.From, row.To, row.Path);
        }
        return data;
    }

    protected static async Task CheckRow(string deviceName, uint caps, string fromName, string toName, string expected)
    {
        var from = KernelRig.Parse(fromName);
        var to = KernelRig.Parse(toName);
        var ct = TestContext.Current.CancellationToken;
        await using var device = KernelRig.Open(deviceName);
        Assert.Equal((VfioMigrationFlags)caps, await device.GetCapabilitiesAsync(ct));

        // The library's FSM must agree with the table before the kernel is asked.
        Assert.Equal(expected, MigrationStateMachine.GetPath(from, to, (VfioMigrationFlags)caps).ToString());

        await device.ResetAsync(ct);
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(ct));
        byte[]? image = from == VfioMigrationState.Resuming ? await MigrationHelpers.SaveAsync(device, ct) : null;
        await using var setupStream = (KernelMigrationDataStream?)await device.SetStateAsync(from, ct);
        Assert.Equal(from, await device.GetStateAsync(ct));
        if (image is not null)
            await setupStream!.WriteAsync(image, ct); // a complete stream, so RESUMING>STOP can succeed

        if (expected.StartsWith('!'))
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(to, ct));
            Assert.Equal(Errno.EINVAL, e.Errno);
            Assert.Contains($"now in {fromName}", e.Message, StringComparison.Ordinal);
            Assert.Equal(from, await device.GetStateAsync(ct));
            return;
        }

        var states = expected.Split('>').Select(KernelRig.Parse).ToArray();
        var arcs = states.Zip(states.Skip(1), (a, b) => new MigrationArc(a, b)).ToArray();
        await using var stream = (KernelMigrationDataStream?)await device.SetStateAsync(to, ct);
        Assert.Equal(to, await device.GetStateAsync(ct));

        var lastEffect = arcs.Length == 0 ? DataSessionEffect.None : MigrationStateMachine.GetSessionEffect(arcs[^1]);
        if (lastEffect is DataSessionEffect.OpensSaving or DataSessionEffect.OpensResuming)
        {
            Assert.NotNull(stream);
            Assert.Equal(lastEffect == DataSessionEffect.OpensSaving ? DataSessionKind.Saving : DataSessionKind.Resuming, stream!.Kind);
            if (setupStream is not null)
                Assert.NotEqual(setupStream.Fd, stream.Fd);
        }
        else
        {
            Assert.Null(stream);
        }

        if (setupStream is not null)
        {
            bool ended = arcs.Any(a => MigrationStateMachine.GetSessionEffect(a) == DataSessionEffect.EndsSession);
            var buffer = new byte[16];
            if (ended)
            {
                var e = await Assert.ThrowsAsync<VfioException>(async () =>
                {
                    if (setupStream.Kind == DataSessionKind.Saving)
                        await setupStream.ReadAsync(buffer, ct);
                    else
                        await setupStream.WriteAsync(buffer, ct);
                });
                Assert.Equal(Errno.ENODEV, e.Errno);
            }
            else if (setupStream.Kind == DataSessionKind.Saving)
            {
                Assert.Equal(16, await setupStream.ReadAsync(buffer, ct)); // still the same live session
            }
        }
    }
}

public sealed class FsmPathCaps1Tests(Caps1Mdev fixture) : FsmPathTestsBase, IClassFixture<Caps1Mdev>
{
    public static TheoryData<string, string, string> Caps1Rows => Rows("0x1");

    [Fact]
    public void Table_Has32ReachableRowsForCaps1()
        => Assert.Equal(32, Caps1Rows.Count);

    [Theory]
    [MemberData(nameof(Caps1Rows))]
    public Task Request_MatchesFsmPathsCsv(string from, string to, string path)
        => CheckRow(fixture.Mdev.Name, 0x1, from, to, path);
}

public sealed class FsmPathCaps3Tests(Caps3Mdev fixture) : FsmPathTestsBase, IClassFixture<Caps3Mdev>
{
    public static TheoryData<string, string, string> Caps3Rows => Rows("0x3");

    [Fact]
    public void Table_Has40ReachableRowsForCaps3()
        => Assert.Equal(40, Caps3Rows.Count);

    [Theory]
    [MemberData(nameof(Caps3Rows))]
    public Task Request_MatchesFsmPathsCsv(string from, string to, string path)
        => CheckRow(fixture.Mdev.Name, 0x3, from, to, path);

    [Theory]
    [InlineData(8u)]
    [InlineData(0xFFFFFFFFu)]
    public async Task Request_OfAnInvalidStateValue_IsEINVAL_AndChangesNothing(uint target)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var device = KernelRig.Open(fixture.Mdev.Name);
        await device.ResetAsync(ct);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync((VfioMigrationState)target, ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(ct));
    }
}
