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

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PreparedDecision_NotPublished_LeavesNoDecisionNorFile_AndResolveDecidesAborted(bool unnamedFiles)
    {
        var ct = TestContext.Current.CancellationToken;
        Directory.CreateDirectory(_dir);
        var store = Store(unnamedFiles);
        var id = Guid.NewGuid();
        var prepared = await store.PrepareDecisionAsync(Committed(id), ct);
        Assert.Equal(unnamedFiles, store.UnnamedFiles);

        // What a crash now leaves behind: the directory as it is — no decision and no file at all.
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        Assert.Null(await new FileMigrationStore(_dir).ReadDecisionAsync(id, ct));
        await prepared.DisposeAsync();
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await prepared.PublishAsync(ct));

        var resolution = await MigrationResolver.ResolveAsync(id, new FileMigrationStore(_dir), null, [], cancellationToken: ct);
        Assert.Equal(MigrationDecision.Aborted, resolution.Decision);
        Assert.True(resolution.DecidedNow);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PreparedDecision_PublishedAfterACompetingDecision_ReturnsTheEarlierOne(bool unnamedFiles)
    {
        var ct = TestContext.Current.CancellationToken;
        var id = Guid.NewGuid();
        var prepared = await Store(unnamedFiles).PrepareDecisionAsync(Committed(id), ct);
        var earlier = await new FileMigrationStore(_dir).DecideAsync(new MigrationDecisionRecord(id, MigrationDecision.Aborted, "resolve", "no commit was recorded", DateTimeOffset.UtcNow), ct);

        var published = await prepared.PublishAsync(ct);
        await prepared.DisposeAsync();

        Assert.Equal((MigrationDecision.Aborted, "resolve"), (published.Decision, published.DecidedBy));
        Assert.Equal(earlier, published);
        Assert.Equal(earlier, await new FileMigrationStore(_dir).ReadDecisionAsync(id, ct));
        Assert.Equal([$"{id:D}.decision.json"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PreparedDecision_Published_IsTheDecisionOnRecord_TimedByItsFileGettingItsName(bool unnamedFiles)
    {
        var ct = TestContext.Current.CancellationToken;
        var id = Guid.NewGuid();
        await using var prepared = await Store(unnamedFiles).PrepareDecisionAsync(Committed(id) with { DecidedUtc = DateTimeOffset.UnixEpoch }, ct);

        var published = await prepared.PublishAsync(ct);

        var path = Path.Combine(_dir, $"{id:D}.decision.json");
        Assert.Equal(published, await new FileMigrationStore(_dir).ReadDecisionAsync(id, ct));
        Assert.Equal(published, await prepared.PublishAsync(ct));
        Assert.Equal((MigrationDecision.Committed, "destination"), (published.Decision, published.DecidedBy));
        // Not the caller's time: the file's, which the link set (and which its content cannot claim ahead).
        Assert.NotEqual(DateTimeOffset.UnixEpoch, published.DecidedUtc);
        string json = await File.ReadAllTextAsync(path, ct);
        Assert.Contains("\"prepared_utc\"", json, StringComparison.Ordinal);
        Assert.DoesNotContain("decided_utc", json, StringComparison.Ordinal);
        Assert.Equal([$"{id:D}.decision.json"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public async Task ADecisionFromAnOlderBuild_KeepsTheDecidedUtcItCarries()
    {
        var ct = TestContext.Current.CancellationToken;
        Directory.CreateDirectory(_dir);
        var id = Guid.NewGuid();
        await File.WriteAllTextAsync(Path.Combine(_dir, $"{id:D}.decision.json"),
            $$"""{"migration_id":"{{id:D}}","decision":"committed","decided_by":"destination","reason":"r","decided_utc":"2026-01-02T03:04:05.0000000+00:00"}""", ct);

        var read = await new FileMigrationStore(_dir).ReadDecisionAsync(id, ct);

        Assert.Equal(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero), read!.DecidedUtc);
        Assert.Equal(MigrationDecision.Committed, read.Decision);
    }

    [Fact]
    public async Task StrayTempFiles_AreIgnored_AndStaleOnesRemovedByTheFirstWrite()
    {
        var ct = TestContext.Current.CancellationToken;
        Directory.CreateDirectory(_dir);
        var id = Guid.NewGuid();
        // What a crash between a temp file's write and its rename or link leaves: a complete record under a temp name.
        string decisionJson = $$"""{"migration_id":"{{id:D}}","decision":"committed","decided_by":"destination","reason":"r","prepared_utc":"2026-01-02T03:04:05.0000000+00:00"}""";
        string stale = Path.Combine(_dir, ".tmp-" + Guid.NewGuid().ToString("N"));
        string fresh = Path.Combine(_dir, ".tmp-" + Guid.NewGuid().ToString("N"));
        await File.WriteAllTextAsync(stale, decisionJson, ct);
        await File.WriteAllTextAsync(fresh, decisionJson, ct);
        File.SetLastWriteTimeUtc(stale, DateTime.UtcNow.AddHours(-2));
        var store = new FileMigrationStore(_dir);

        Assert.Null(await store.ReadDecisionAsync(id, ct));
        Assert.Empty(await store.ListRecordsAsync(ct));
        await store.WriteRecordAsync(new MigrationRecord(id, MigrationSide.Destination, ["sample:dst"], MigrationRecordStatus.Begun, "migrating", DateTimeOffset.UtcNow), ct);

        Assert.False(File.Exists(stale), "a temp file left hours ago by a crash was not removed");
        Assert.True(File.Exists(fresh), "a temp file another writer may be about to rename was removed");
        Assert.Null(await store.ReadDecisionAsync(id, ct));
        var resolution = await MigrationResolver.ResolveAsync(id, store, null, [], cancellationToken: ct);
        Assert.Equal(MigrationDecision.Aborted, resolution.Decision);
    }

    private FileMigrationStore Store(bool unnamedFiles) => new(_dir) { UnnamedFiles = unnamedFiles };

    private static MigrationDecisionRecord Committed(Guid id)
        => new(id, MigrationDecision.Committed, "destination", "the source committed after every device loaded", DateTimeOffset.UtcNow);

    public void Dispose()
    {
        if (Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }
}
