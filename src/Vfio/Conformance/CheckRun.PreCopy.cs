using Vfio.Device;
using Vfio.Migration;

namespace Vfio.Conformance;

// Group precopy: temporary end, precopy info, leaving PRE_COPY.
internal sealed partial class CheckRun
{
    private async Task RunPreCopyAsync(CancellationToken ct)
    {
        const string endRule = "precopy.temporary-end", infoRule = "precopy.info-initial-bytes",
            outsideRule = "precopy.info-outside-precopy", blockedRule = "precopy.stop-copy-to-pre-copy";
        if ((Caps & VfioMigrationFlags.PreCopy) == 0)
        {
            SkipGroup(ConformanceGroups.PreCopy, $"caps {MigrationStateMachine.FormatCaps(Caps)} lack VFIO_MIGRATION_PRE_COPY");
            return;
        }

        Current(endRule);
        var (estimate, _) = await TryStopCopySizeAsync(_device, ct).ConfigureAwait(false);
        var d = await DriveAsync(_device, PreCopy, ct).ConfigureAwait(false);
        if (d.Error is not null || d.Stream is null)
        {
            Unmet(endRule, d.Error is null ? d with { Error = "RUNNING→PRE_COPY returned no stream" } : d);
            BlockGroup(ConformanceGroups.PreCopy, d.BlockedBy ?? endRule, "no PRE_COPY stream");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var stream = d.Stream;
        // VFIO_MIG_GET_PRECOPY_INFO that the client emulates has no answer of the device's to judge.
        string? emulated = _raw is { PrecopyInfoEmulated: true }
            ? "the transport has no VFIO_MIG_GET_PRECOPY_INFO; our client emulates it, so there is no answer of the device's to judge"
            : null;

        // Read to the temporary end, querying the precopy info after every read.
        var infoProblems = new List<string>();
        var (previous, infoError) = await TryPrecopyInfoAsync(stream, ct).ConfigureAwait(false);
        if (infoError is not null)
            infoProblems.Add($"VFIO_MIG_GET_PRECOPY_INFO in PRE_COPY failed with {infoError}");
        var buffer = new byte[_readSize];
        long total = 0, limit = ReadLimit(estimate);
        int queries = 0;
        string? end = null;
        bool endIsZero = false;
        while (end is null)
        {
            var r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
            if (r.Result.Errno == Errno.ENOMSG)
            {
                end = "ENOMSG";
                break;
            }
            if (!r.Ok)
            {
                Fail(endRule, $"a PRE_COPY read after {total} bytes failed with {r.Result.Describe()}");
                end = "error";
                break;
            }
            if (r.Count == 0)
            {
                end = "0";
                endIsZero = true;
                break;
            }
            total += r.Count;
            if (total > limit)
            {
                Skip(endRule, $"inconclusive: no temporary end after {total} bytes (a busy workload may keep PRE_COPY going)");
                end = "limit";
                break;
            }
            var (info, err) = await TryPrecopyInfoAsync(stream, ct).ConfigureAwait(false);
            queries++;
            if (err is not null)
            {
                infoProblems.Add($"VFIO_MIG_GET_PRECOPY_INFO after {total} bytes failed with {err}");
                continue;
            }
            if (previous is { } p && info is { } i && !i.Reinit && i.InitialBytes > p.InitialBytes && infoProblems.Count < 3)
                infoProblems.Add($"initial_bytes grew from {p.InitialBytes} to {i.InitialBytes} after {total} bytes were read (no REINIT)");
            previous = info ?? previous;
        }

        if (end is "ENOMSG" or "0")
        {
            var (atEnd, err) = await TryPrecopyInfoAsync(stream, ct).ConfigureAwait(false);
            if (err is not null)
                infoProblems.Add($"VFIO_MIG_GET_PRECOPY_INFO at the temporary end failed with {err}");
            else if (atEnd is { InitialBytes: not 0 } e)
                infoProblems.Add($"initial_bytes is {e.InitialBytes} at the temporary end (expected 0)");
            if (endIsZero)
                Pass(endRule, $"read() returned 0 at the temporary end after {total} bytes", "0 instead of ENOMSG (mtty/qat/hisi behaviour; the uAPI asks for ENOMSG)");
            else
                Pass(endRule, $"ENOMSG at the temporary end after {total} bytes");
        }
        if (emulated is not null)
            Skip(infoRule, emulated);
        else if (infoProblems.Count == 0)
            Pass(infoRule, $"{queries + 1} queries while reading {total} bytes; initial_bytes never grew{(end is "ENOMSG" or "0" ? " and was 0 at the temporary end" : "")}");
        else
            Fail(infoRule, string.Join("; ", infoProblems));

        // Leave PRE_COPY for STOP_COPY: the same stream continues, precopy info is EINVAL, PRE_COPY is blocked.
        var outside = new List<string>();
        var toStopCopy = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!toStopCopy.Ok || await GetAsync(_device, ct).ConfigureAwait(false) != StopCopy)
        {
            string why = $"PRE_COPY→STOP_COPY failed: {toStopCopy.Result.Describe()}";
            if (emulated is not null)
                Skip(outsideRule, emulated);
            else
                Fail(outsideRule, why);
            Skip(blockedRule, why);
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var (_, inStopCopy) = await TryPrecopyInfoAsync(stream, ct).ConfigureAwait(false);
        if (inStopCopy != "EINVAL")
            outside.Add($"in STOP_COPY the query {(inStopCopy is null ? "succeeded" : "failed with " + inStopCopy)} instead of EINVAL");

        var blocked = await SetAsync(_device, PreCopy, ct).ConfigureAwait(false);
        var after = await GetAsync(_device, ct).ConfigureAwait(false);
        var stillReads = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
        if (blocked.Ok)
            Fail(blockedRule, $"STOP_COPY→PRE_COPY succeeded (expected EINVAL); GET shows {Name(after)}");
        else if (blocked.Errno != Errno.EINVAL)
            Fail(blockedRule, $"STOP_COPY→PRE_COPY failed with {blocked.Result.Describe()} instead of EINVAL");
        else if (after != StopCopy)
            Fail(blockedRule, $"STOP_COPY→PRE_COPY was rejected, but GET shows {Name(after)}");
        else if (!stillReads.Ok)
            Fail(blockedRule, $"after the rejected request the stream failed with {stillReads.Result.Describe()}");
        else
            Pass(blockedRule, "EINVAL; still STOP_COPY and the stream kept reading");

        Current(outsideRule);
        // Drain, end the session: the query must still be EINVAL (the state is checked before the stream, §4.4).
        await ReadToEndAsync(stream, limit, ct).ConfigureAwait(false);
        if ((await SetAsync(_device, Stop, ct).ConfigureAwait(false)).Ok)
        {
            var (_, ended) = await TryPrecopyInfoAsync(stream, ct).ConfigureAwait(false);
            if (ended != "EINVAL")
                outside.Add($"after STOP_COPY→STOP the query on the ended stream {(ended is null ? "succeeded" : "failed with " + ended)} instead of EINVAL");
        }
        else
        {
            outside.Add("STOP_COPY→STOP failed");
        }
        if (emulated is not null)
            Skip(outsideRule, emulated);
        else if (outside.Count == 0)
            Pass(outsideRule, "EINVAL in STOP_COPY and in STOP after the stream ended");
        else
            Fail(outsideRule, string.Join("; ", outside));
        await LeaveAsync(_device, ct).ConfigureAwait(false);
    }

    // The estimate, or the errno name (e.g. "EINVAL") / message of the failure.
    private async Task<(PrecopyEstimate? Info, string? Error)> TryPrecopyInfoAsync(IMigrationDataStream stream, CancellationToken ct)
    {
        try
        {
            return (await stream.GetPrecopyInfoAsync(ct).ConfigureAwait(false), null);
        }
        catch (VfioException ex)
        {
            Observe(Outcome.From(ex));
            return (null, VfioException.NameOf(ex.Errno));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return (null, Describe(ex));
        }
    }
}
