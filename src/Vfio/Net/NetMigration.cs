using System.IO.Pipelines;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Net;

/// <summary>The outcome of a successful host-to-host migration, as seen by one side.</summary>
/// <param name="Statistics">The engine's figures for this side.</param>
/// <param name="Status">The receiver's final status (digest or the reason there is none).</param>
/// <param name="Verdict">0 = not verified, 1 = source and destination digests match, 2 = they differ.</param>
/// <param name="SourceDigest">The source digest (empty when the source cannot compute one).</param>
public sealed record NetMigrationResult(MigrationStatistics Statistics, NetStatus Status, byte Verdict, byte[] SourceDigest);

/// <summary>
/// Runs the migration engine over a network session: the source half on the sender (forward stream over the
/// channels, return path on the control channel), the destination half on the receiver, then the final status
/// and digest exchange. On any failure the engine restores its side (sources RUNNING and unchanged, destinations
/// reset), the peer is told why (Abort frame), and the error is rethrown.
/// </summary>
public static class NetMigration
{
    /// <summary>Digest of the devices' state (e.g. SHA-256 of a sample device), or empty with a note why none.</summary>
    public delegate ValueTask<(byte[] Digest, string Note)> DigestFunc(CancellationToken cancellationToken);

    /// <summary>
    /// The sender's half. <paramref name="sourceDigest"/> runs after the sources stopped. <paramref name="committed"/>
    /// is called once the engine finished: from then on the destination runs and the sources must not be resumed,
    /// even if the final status exchange fails.
    /// </summary>
    public static async Task<NetMigrationResult> SendAsync(NetSenderSession session, IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, DigestFunc sourceDigest, IProgress<MigrationProgress>? progress = null, Action? committed = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(sourceDigest);
        MigrationStatistics statistics;
        try
        {
            statistics = await new MigrationSource(devices, options).RunAsync(session.CreateMigrationWriter(), Reader(session.ReturnStream), progress, cancellationToken).ConfigureAwait(false);
            committed?.Invoke();
            await session.CompleteAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            var (errno, message) = Describe(e);
            await session.AbortAsync(errno, message).ConfigureAwait(false);
            throw;
        }
        NetStatus status = await session.WaitForStatusAsync(cancellationToken).ConfigureAwait(false);
        if (!status.Ok)
            throw new VfioException(status.Errno, "receiver", status.Message);
        var (digest, _) = await sourceDigest(cancellationToken).ConfigureAwait(false);
        byte verdict = digest.Length == 0 || status.Digest.Length == 0 ? (byte)0
            : digest.AsSpan().SequenceEqual(status.Digest) ? (byte)1 : (byte)2;
        await session.SendByeAsync(verdict, digest, cancellationToken).ConfigureAwait(false);
        return new NetMigrationResult(statistics, status, verdict, digest);
    }

    /// <summary>
    /// The receiver's half. <paramref name="destinationDigest"/> runs once the destinations are RUNNING.
    /// <paramref name="committed"/> is called at that point: a later failure of the status exchange must not reset them.
    /// </summary>
    public static async Task<NetMigrationResult> ReceiveAsync(NetReceiverSession session, IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions options, DigestFunc destinationDigest, IProgress<MigrationProgress>? progress = null, Action? committed = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(destinationDigest);
        MigrationStatistics statistics;
        byte[] digest;
        string note;
        try
        {
            statistics = await new MigrationDestination(devices, options).RunAsync(session.CreateMigrationReader(), Writer(session.ReturnStream), progress, cancellationToken).ConfigureAwait(false);
            committed?.Invoke();
            (digest, note) = await destinationDigest(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            var (errno, message) = Describe(e);
            await session.AbortAsync(errno, message).ConfigureAwait(false);
            throw;
        }
        var status = new NetStatus(true, 0, "destination devices are RUNNING", digest, note);
        var (verdict, sourceDigest) = await session.SendStatusAsync(status, cancellationToken).ConfigureAwait(false);
        return new NetMigrationResult(statistics, status, verdict, sourceDigest);
    }

    // Large pipe buffers: the default 4 KiB reads would cost one reassembly round trip per 4 KiB.
    private static PipeReader Reader(System.IO.Stream stream)
        => PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 1 << 20, minimumReadSize: 64 << 10, leaveOpen: true));

    private static PipeWriter Writer(System.IO.Stream stream)
        => PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 256 << 10, leaveOpen: true));

    /// <summary>The errno and message of a failure from the engine or the transport.</summary>
    public static (Errno Errno, string Message) Describe(Exception e) => e switch
    {
        MigrationException m => (m.Errno, m.Message),
        VfioException v => (v.Errno, v.Message),
        OperationCanceledException => (Errno.ECANCELED, "ECANCELED: the migration was cancelled"),
        _ => (Errno.EIO, "EIO: " + e.Message),
    };
}
