using Vfio.Engine;
using Vfio.Records;

namespace Vfio.Tests.Records;

/// <summary>The file records of docs/commit-protocol.md: atomic side records, a write-once decision that one caller wins.</summary>
public sealed class FileMigrationStoreTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "vfio-mig-store-" + Guid.NewGuid().ToString("N")[..12]);

    [Fact]
    public async Task Records_RoundTrip_AndAreReplacedWhole()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = new FileMigrationStore(_dir);
        var id = Guid.NewGuid();
        var record = new MigrationRecord(id, MigrationSide.Source, ["unix:/tmp/a.sock"], MigrationRecordStatus.Begun, "migrating", DateTimeOffset.UtcNow);
        await store.WriteRecordAsync(record, ct);
        await store.WriteRecordAsync(record with { Status = MigrationRecordStatus.Held, Detail = "held" }, ct);

        var read = await store.ReadRecordAsync(id, MigrationSide.Source, ct);
        Assert.NotNull(read);
        Assert.Equal(MigrationRecordStatus.Held, read.Status);
        Assert.Equal(["unix:/tmp/a.sock"], read.Devices);
        Assert.Null(await store.ReadRecordAsync(id, MigrationSide.Destination, ct));
        Assert.Single(await store.ListRecordsAsync(ct));
        // No temp file is left behind, and the directory is private.
        Assert.Equal([$"{id:D}.source.json"], Directory.GetFiles(_dir).Select(Path.GetFileName));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_dir));
    }

    [Fact]
    public async Task Decide_IsWriteOnce_AndOfConcurrentCallersExactlyOneWins()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = Guid.NewGuid();
        var results = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
            await new FileMigrationStore(_dir).DecideAsync(new MigrationDecisionRecord(id, i % 2 == 0 ? MigrationDecision.Committed : MigrationDecision.Aborted, "caller" + i, "race", DateTimeOffset.UtcNow), ct), ct)));

        var winner = results[0];
        Assert.All(results, r => Assert.Equal((winner.Decision, winner.DecidedBy), (r.Decision, r.DecidedBy)));
        var onDisk = await new FileMigrationStore(_dir).ReadDecisionAsync(id, ct);
        Assert.Equal((winner.Decision, winner.DecidedBy), (onDisk!.Decision, onDisk.DecidedBy));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public async Task ACorruptRecord_IsEbadmsg_AndIsLeftOutOfTheList()
    {
        var ct = TestContext.Current.CancellationToken;
        Directory.CreateDirectory(_dir);
        var id = Guid.NewGuid();
        await File.WriteAllTextAsync(Path.Combine(_dir, $"{id:D}.decision.json"), "{ not json", ct);
        await File.WriteAllTextAsync(Path.Combine(_dir, $"{id:D}.source.json"), "{}", ct);
        var store = new FileMigrationStore(_dir);

        var ex = await Assert.ThrowsAsync<VfioException>(async () => await store.ReadDecisionAsync(id, ct));
        Assert.Equal(Errno.EBADMSG, ex.Errno);
        Assert.Empty(await store.ListRecordsAsync(ct));
    }

    public void Dispose()
    {
        if (Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }
}
