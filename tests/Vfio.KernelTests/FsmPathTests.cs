using Vfio.Device;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>
/// Every (from, to) request of fsm-paths.csv for the driver's caps, against the real kernel: the device is
/// reset (RUNNING), driven to <c>from</c>, then <c>to</c> is requested. Success rows must reach <c>to</c>,
/// return a data fd exactly when the last arc opens a session, and terminate an open data fd when the path
/// ends its session; <c>!EINVAL</c> rows must fail with EINVAL and leave the state unchanged.
/// Rows whose <c>from</c> is ERROR are reached by injecting an arc failure with <c>fail_to_error</c>; the
/// 6.1 core WARNs for ERROR→other, so those calls are bracketed with the rig's expected-WARN markers.
/// <c>n/a</c> rows cannot exist (the device can never be in that state) and are not part of the data.
/// </summary>
public abstract class FsmPathTestsBase
{
    protected static TheoryData<string, string, string> Rows(string caps)
    {
        var data = new TheoryData<string, string, string>();
        foreach (var row in KernelRig.FsmRows())
        {
            if (row.Caps == caps && row.Path != "n/a")
                data.Add(row.From, row.To, row.Path);
        }
        return data;
    }

    private static async Task CheckErrorRow(KernelMigrationDevice device, uint caps, VfioMigrationState to, string expected, CancellationToken ct)
    {
        await ErrorState.EnterAsync(device, caps, ct);
        try
        {
            if (expected == "ERROR")
            {
                Assert.Null(await device.SetStateAsync(to, ct)); // ERROR>ERROR: the loop never runs
            }
            else
            {
                Assert.Equal("!EINVAL(WARN)", expected);
                await ErrorState.ExpectingKernelWarnAsync(async () =>
                {
                    var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(to, ct));
                    Assert.Equal(Errno.EINVAL, e.Errno);
                    Assert.Contains("now in ERROR", e.Message, StringComparison.Ordinal);
                });
            }
            Assert.Equal(VfioMigrationState.Error, await device.GetStateAsync(ct));
        }
        finally
        {
            await device.ResetAsync(ct);
        }
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(ct));
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
        if (from == VfioMigrationState.Error)
        {
            await CheckErrorRow(device, caps, to, expected, ct);
            return;
        }
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

/// <summary>Helpers shared by the FSM tests.</summary>
internal static class ErrorState
{
    /// <summary>Drives a RUNNING device into ERROR: the first arc toward STOP fails with fail_to_error set.</summary>
    public static async Task EnterAsync(KernelMigrationDevice device, uint caps, CancellationToken ct)
    {
        KernelRig.WriteParam("fail_errno", "5");
        KernelRig.WriteParam("fail_to_error", "Y");
        KernelRig.WriteParam("fail_arc", (caps & 0x2) != 0 ? "RUNNING>RUNNING_P2P" : "RUNNING>STOP");
        try
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(VfioMigrationState.Stop, ct));
            Assert.Equal(Errno.EIO, e.Errno);
            Assert.Contains("now in ERROR", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            KernelRig.WriteParam("fail_arc", "\n");
            KernelRig.WriteParam("fail_to_error", "N");
        }
        Assert.Equal(VfioMigrationState.Error, await device.GetStateAsync(ct));
    }

    /// <summary>Runs <paramref name="action"/> between the rig's expected-kernel-WARN markers.</summary>
    public static async Task ExpectingKernelWarnAsync(Func<Task> action)
    {
        File.WriteAllText("/dev/kmsg", "vmt-expect-warn-begin\n");
        try
        {
            await action();
        }
        finally
        {
            File.WriteAllText("/dev/kmsg", "vmt-expect-warn-end\n");
        }
    }
}

public sealed class FsmPathCaps1Tests(Caps1Mdev fixture) : FsmPathTestsBase, IClassFixture<Caps1Mdev>
{
    public static TheoryData<string, string, string> Caps1Rows => Rows("0x1");

    [Fact]
    public void Table_Has40ReachableRowsForCaps1()
        => Assert.Equal(40, Caps1Rows.Count); // 64 rows − 24 n/a

    [Theory]
    [MemberData(nameof(Caps1Rows))]
    public Task Request_MatchesFsmPathsCsv(string from, string to, string path)
        => CheckRow(fixture.Mdev.Name, 0x1, from, to, path);
}

public sealed class FsmPathCaps3Tests(Caps3Mdev fixture) : FsmPathTestsBase, IClassFixture<Caps3Mdev>
{
    public static TheoryData<string, string, string> Caps3Rows => Rows("0x3");

    [Fact]
    public void Table_Has48ReachableRowsForCaps3()
        => Assert.Equal(48, Caps3Rows.Count); // 64 rows − 16 n/a

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

/// <summary>Rows for caps with PRE_COPY: on a kernel before 6.2 one placeholder row, which skips with the reason.</summary>
internal static class PreCopyRows
{
    public const string None = "-";

    public static TheoryData<string, string, string> For(string caps)
    {
        if (!KernelRig.HasPreCopy)
            return new TheoryData<string, string, string> { { None, None, None } };
        var data = new TheoryData<string, string, string>();
        foreach (var row in KernelRig.FsmRows())
        {
            if (row.Caps == caps && row.Path != "n/a")
                data.Add(row.From, row.To, row.Path);
        }
        return data;
    }
}

public sealed class FsmPathCaps5Tests(Caps5Mdev fixture) : FsmPathTestsBase, IClassFixture<Caps5Mdev>
{
    public static TheoryData<string, string, string> Caps5Rows => PreCopyRows.For("0x5");

    [Fact]
    public void Table_Has48ReachableRowsForCaps5()
    {
        KernelRig.RequirePreCopy();
        Assert.Equal(48, Caps5Rows.Count); // 64 rows − 16 n/a (the P2P states)
    }

    [Theory]
    [MemberData(nameof(Caps5Rows))]
    public Task Request_MatchesFsmPathsCsv(string from, string to, string path)
        => CheckRow(fixture.Name, 0x5, from, to, path);
}

public sealed class FsmPathCaps7Tests(Caps7Mdev fixture) : FsmPathTestsBase, IClassFixture<Caps7Mdev>
{
    public static TheoryData<string, string, string> Caps7Rows => PreCopyRows.For("0x7");

    [Fact]
    public void Table_Has64RowsForCaps7()
    {
        KernelRig.RequirePreCopy();
        Assert.Equal(64, Caps7Rows.Count); // every state is reachable with caps 0x7
    }

    [Theory]
    [MemberData(nameof(Caps7Rows))]
    public Task Request_MatchesFsmPathsCsv(string from, string to, string path)
        => CheckRow(fixture.Name, 0x7, from, to, path);
}

/// <summary>
/// The same rows against the kernel's own mtty sample driver (caps 0x7), a driver this project did not write.
/// mtty has no fault injection, so the 8 rows that start in ERROR cannot be set up there: they skip (they run
/// on vfio_mig_test with caps 0x7 above).
/// </summary>
public sealed class FsmPathMttyTests : FsmPathTestsBase
{
    public static TheoryData<string, string, string> Caps7Rows => PreCopyRows.For("0x7");

    [Theory]
    [MemberData(nameof(Caps7Rows))]
    public Task Request_MatchesFsmPathsCsv(string from, string to, string path)
    {
        string device = KernelRig.MttyDevices[0];
        if (from == "ERROR")
            Assert.Skip("mtty cannot be driven into ERROR (it has no fault injection); this row runs on vfio_mig_test caps 0x7");
        return CheckRow(device, 0x7, from, to, path);
    }
}
