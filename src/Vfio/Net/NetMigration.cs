using System.IO.Pipelines;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Net;

/// <summary>The outcome of a successful host-to-host migration, as seen by one side.</summary>
/// <param name="Statistics">The engine's figures for this side.</param>
/// <param name="Status">The receiver's final status (digest or the reason there is none).</param>
/// <param name="Verdict">
/// 0 = not verified (a side has no digest), 1 = source and destination digests match, 2 = they differ,
/// 3 = not compared (the digests cover different kinds of state).
/// </param>
/// <param name="SourceDigest">The source digest (empty when the source cannot compute one or it was not comparable).</param>
/// <param name="Note">For verdicts 0 and 3: the <c>verification skipped: …</c> line saying why; else empty.</param>
public sealed record NetMigrationResult(MigrationStatistics Statistics, NetStatus Status, byte Verdict, byte[] SourceDigest, string Note);

/// <summary>
/// Runs the migration engine over a network session: the source half on the sender (forward stream over the
/// channels, return path on the control channel), the destination half on the receiver, then the final status
/// and digest exchange. On any failure the engine restores its side (sources RUNNING and unchanged, destinations
/// reset), the peer is told why (Abort frame), and the error is rethrown.
/// </summary>
public static class NetMigration
{
    /// <summary>Digest of the devices' state (e.g. SHA-256 of a sample device) and its kind, or none with a note why.</summary>
    public delegate ValueTask<NetDigest> DigestFunc(CancellationToken cancellationToken);

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
        var source = await sourceDigest(cancellationToken).ConfigureAwait(false);
        var (verdict, note) = NetDigest.Judge(source, new NetDigest(status.Digest, status.DigestKind, status.Note));
        // Bye: the verdict and the source digest with its kind; the receiver compares for itself.
        byte[] bye = NetDigest.EncodeBye(verdict, source);
        await session.SendByeAsync(bye[0], bye[1..], cancellationToken).ConfigureAwait(false);
        return new NetMigrationResult(statistics, status, verdict, verdict == 3 ? [] : source.Value, note);
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
        NetDigest digest;
        try
        {
            statistics = await new MigrationDestination(devices, options).RunAsync(session.CreateMigrationReader(), Writer(session.ReturnStream), progress, cancellationToken).ConfigureAwait(false);
            committed?.Invoke();
            digest = await destinationDigest(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            var (errno, message) = Describe(e);
            await session.AbortAsync(errno, message).ConfigureAwait(false);
            throw;
        }
        var status = new NetStatus(true, 0, "destination devices are RUNNING", digest.Value, digest.Note, digest.Kind);
        var (senderVerdict, rest) = await session.SendStatusAsync(status, cancellationToken).ConfigureAwait(false);
        if (rest.Length == 0 && senderVerdict == 0)
            throw new VfioException(Errno.ECONNRESET, "receive", "the sender ended the session without its final word (Bye), so the end of the session cannot be verified");
        // The receiver judges for itself: the sender's verdict is only compared with it, never trusted.
        var (bye, source) = NetDigest.DecodeBye([senderVerdict, .. rest]);
        var (verdict, note) = NetDigest.Judge(source, digest);
        if (verdict != bye)
            throw new VfioException(Errno.EBADMSG, "receive", $"the sender's verdict ({bye}) differs from this side's comparison of the digests ({verdict})");
        return new NetMigrationResult(statistics, status, verdict, verdict == 3 ? [] : source.Value, note);
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
