using Vfio.Migration;

namespace Vfio.Conformance;

// Group sessions: stream lifetime, end of stream, same-state requests, size estimate, broken resumes.
internal sealed partial class CheckRun
{
    private async Task RunSessionsAsync(CancellationToken ct)
    {
        await StaleStreamAsync(ct).ConfigureAwait(false);
        await StaleAfterResetAsync(ct).ConfigureAwait(false);
        await EofAndSizeAsync(ct).ConfigureAwait(false);
        await SameStateNoStreamAsync(ct).ConfigureAwait(false);
        await BrokenResumesAsync(ct).ConfigureAwait(false);
    }

    private async Task StaleStreamAsync(CancellationToken ct)
    {
        const string rule = "sessions.stale-stream";
        Current(rule);
        var problems = new List<string>();
        var buffer = new byte[_readSize];
        var d = await DriveAsync(_device, Stop, ct).ConfigureAwait(false);
        if (d.Error is not null)
        {
            Unmet(rule, d);
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var first = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!first.Ok || first.Stream is null)
        {
            Fail(rule, $"STOP→STOP_COPY {(first.Ok ? "returned no stream" : "failed with " + first.Result.Describe())}");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var a = first.Stream;
        var r = await ReadAsync(a, buffer, ct).ConfigureAwait(false);
        if (!r.Ok || r.Count == 0)
            problems.Add($"the first read of a fresh STOP_COPY stream gave {r.Describe()}");
        if (!(await SetAsync(_device, Stop, ct).ConfigureAwait(false)).Ok)
            problems.Add("STOP_COPY→STOP failed");
        // A stream that is not an object of the device (vfio-user) is judged by the device's answer to a raw read.
        var ended = await StaleReadAsync(a, buffer, ct).ConfigureAwait(false);
        if (!ended.Refused)
            problems.Add($"after STOP_COPY→STOP a read on its stream {ended.Problem}");

        var second = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!second.Ok || second.Stream is null)
        {
            problems.Add($"the second STOP→STOP_COPY {(second.Ok ? "returned no stream" : "failed with " + second.Result.Describe())}");
        }
        else
        {
            if (_raw is null)
            {
                if (ReferenceEquals(second.Stream, a))
                    problems.Add("the second session returned the first session's stream object");
                r = await ReadAsync(a, buffer, ct).ConfigureAwait(false);
                if (r.Result.Errno != Errno.ENODEV)
                    problems.Add($"while a later session is open, a read on the earlier stream {DescribeStale(r)}");
            }
            r = await ReadAsync(second.Stream, buffer, ct).ConfigureAwait(false);
            if (!r.Ok || r.Count == 0)
                problems.Add($"the new session's stream gave {r.Describe()} on its first read");
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);

        int cases = _raw is null ? 3 : 1;
        if ((Caps & VfioMigrationFlags.PreCopy) != 0 && _death is null)
        {
            cases++;
            var pre = await SetAsync(_device, PreCopy, ct).ConfigureAwait(false);
            if (pre.Ok && pre.Stream is not null)
            {
                var back = await SetAsync(_device, Running, ct).ConfigureAwait(false);
                var stale = await StaleReadAsync(pre.Stream, buffer, ct).ConfigureAwait(false);
                if (back.Ok && !stale.Refused)
                    problems.Add($"after PRE_COPY→RUNNING a read on its stream {stale.Problem}");
            }
            else
            {
                problems.Add($"RUNNING→PRE_COPY {(pre.Ok ? "returned no stream" : "failed with " + pre.Result.Describe())}");
            }
            await LeaveAsync(_device, ct).ConfigureAwait(false);
        }
        if (problems.Count > 0)
            Fail(rule, string.Join("; ", problems));
        else if (_raw is null)
            Pass(rule, $"{cases} ended streams answered ENODEV; each session had its own stream");
        else
            Pass(rule, $"{cases} reads after the session ended were refused by the device ({ended.Answer}); a stream is not an object of the device on this transport, so whether an old stream stays readable during a later session cannot be seen");
    }

    private readonly record struct StaleRead(bool Refused, string Answer, string Problem);

    // A read on an ended stream: ENODEV from the stream (kernel, in-process), or, where the stream is the client's
    // object, any error the device itself answers to a raw read (a connection loss is no answer).
    private async Task<StaleRead> StaleReadAsync(IMigrationDataStream stream, Memory<byte> buffer, CancellationToken ct)
    {
        if (_raw is null)
        {
            var r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
            return new StaleRead(r.Result.Errno == Errno.ENODEV, "ENODEV", DescribeStale(r));
        }
        int got = 0;
        var o = await TryAsync(async () => got = await _raw.ReadMigrationDataRawAsync(_readSize, ct).ConfigureAwait(false)).ConfigureAwait(false);
        if (o.Ok)
            return new StaleRead(false, "", $"was answered with {got} bytes by the device (expected an error)");
        bool lost = s_lostErrnos.Contains(o.Errno);
        return new StaleRead(!lost, VfioException.NameOf(o.Errno), $"ended the connection ({o.Describe()})");
    }

    private async Task StaleAfterResetAsync(CancellationToken ct)
    {
        const string rule = "sessions.stale-after-reset";
        Current(rule);
        var problems = new List<string>();
        var buffer = new byte[_readSize];

        var d = await DriveAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (d.Error is not null || d.Stream is null)
        {
            Unmet(rule, d.Error is null ? d with { Error = "STOP→STOP_COPY returned no stream" } : d);
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var saving = d.Stream;
        if (!await ResetAndObserveAsync(_device, StopCopy, ct).ConfigureAwait(false))
        {
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            Block(rule, RecoveryCause() ?? "probe.reset", $"{_resetProblems.GetValueOrDefault(StopCopy, "a reset in STOP_COPY did not return RUNNING")} (see probe.reset)");
            return;
        }
        var stale = await StaleReadAsync(saving, buffer, ct).ConfigureAwait(false);
        if (!stale.Refused)
            problems.Add($"after a reset a read on the saving stream {stale.Problem}");
        await LeaveAsync(_device, ct).ConfigureAwait(false);

        d = await DriveAsync(_device, Resuming, ct).ConfigureAwait(false);
        if (d.Error is not null || d.Stream is null)
        {
            if (d.BlockedBy is not null)
            {
                Unmet(rule, d);
                await LeaveAsync(_device, ct).ConfigureAwait(false);
                return;
            }
            problems.Add(d.Error ?? "STOP→RESUMING returned no stream");
        }
        else
        {
            var resuming = d.Stream;
            if (!await ResetAndObserveAsync(_device, Resuming, ct).ConfigureAwait(false))
            {
                await LeaveAsync(_device, ct).ConfigureAwait(false);
                Block(rule, RecoveryCause() ?? "probe.reset", $"{_resetProblems.GetValueOrDefault(Resuming, "a reset in RESUMING did not return RUNNING")} (see probe.reset)");
                return;
            }
            var w = _raw is null
                ? await WriteAsync(resuming, new byte[1], ct).ConfigureAwait(false)
                : await TryAsync(() => _raw.WriteMigrationDataRawAsync(new byte[1], ct)).ConfigureAwait(false);
            bool refused = _raw is null ? w.Errno == Errno.ENODEV : !w.Ok && !s_lostErrnos.Contains(w.Errno);
            if (!refused)
                problems.Add($"after a reset a write on the resuming stream {(w.Ok ? "succeeded" : "failed with " + w.Describe())} instead of {(_raw is null ? "ENODEV" : "an error")}");
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);
        if (problems.Count > 0)
            Fail(rule, string.Join("; ", problems));
        else
            Pass(rule, _raw is null
                ? "saving and resuming streams answered ENODEV after a reset; the device was RUNNING"
                : "after a reset the device was RUNNING and refused a raw data read and write");
    }

    private async Task EofAndSizeAsync(CancellationToken ct)
    {
        const string eofRule = "sessions.stop-copy-eof", sizeRule = "sessions.stop-copy-size";
        Current(eofRule);
        var d = await DriveAsync(_device, Stop, ct).ConfigureAwait(false);
        if (d.Error is not null)
        {
            Unmet(eofRule, d);
            Unmet(sizeRule, d with { Error = $"no STOP_COPY stream to compare with: {d.Error}", BlockedBy = d.BlockedBy ?? eofRule });
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var (estimate, estimateResult) = await TryStopCopySizeAsync(_device, ct).ConfigureAwait(false);
        var o = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (!o.Ok || o.Stream is null)
        {
            Fail(eofRule, $"STOP→STOP_COPY {(o.Ok ? "returned no stream" : "failed with " + o.Result.Describe())}");
            Skip(sizeRule, "no STOP_COPY stream to compare with");
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var saved = await ReadToEndAsync(o.Stream, ReadLimit(estimate), ct).ConfigureAwait(false);
        var problems = new List<string>();
        if (saved.Error is not null)
            problems.Add(saved.Error);
        else
        {
            var buffer = new byte[_readSize];
            for (int i = 0; i < 3; i++)
            {
                var r = await ReadAsync(o.Stream, buffer, ct).ConfigureAwait(false);
                if (!r.Ok || r.Count != 0)
                {
                    problems.Add($"read {i + 2} after the end gave {r.Describe()} instead of 0");
                    break;
                }
            }
        }
        await LeaveAsync(_device, ct).ConfigureAwait(false);

        if (problems.Count == 0)
        {
            Pass(eofRule, $"{saved.Length} bytes then 0, 0, 0, 0 (sha256 {saved.Sha256[..16]}…)");
            _savedStream = saved.Data;
        }
        else
        {
            Fail(eofRule, string.Join("; ", problems));
        }

        if (!estimateResult.Ok)
        {
            if (estimateResult.Errno is Errno.ENOTTY or Errno.EINVAL or Errno.EOPNOTSUPP)
                Skip(sizeRule, $"the device does not report MIG_DATA_SIZE ({estimateResult.Describe()})");
            else
                Fail(sizeRule, $"MIG_DATA_SIZE failed with {estimateResult.Describe()}");
        }
        else if (saved.Error is not null)
        {
            Skip(sizeRule, $"estimate {estimate} B, but the STOP_COPY stream did not end cleanly");
        }
        else if (estimate == 0)
        {
            Fail(sizeRule, $"the estimate is 0 B; the STOP_COPY stream delivered {saved.Length} B");
        }
        else if ((double)estimate!.Value * 2 < saved.Length)
        {
            Fail(sizeRule, $"the estimate {estimate} B is below half of the {saved.Length} B the STOP_COPY stream delivered");
        }
        else
        {
            string ratio = saved.Length == 0 ? "n/a" : ((double)estimate.Value / saved.Length).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
            Pass(sizeRule, $"estimate {estimate} B, stream {saved.Length} B (ratio {ratio}; tolerance: at least 0.5)");
        }
    }

    private async Task SameStateNoStreamAsync(CancellationToken ct)
    {
        const string rule = "sessions.same-state-no-stream";
        Current(rule);
        var d = await DriveAsync(_device, StopCopy, ct).ConfigureAwait(false);
        if (d.Error is not null || d.Stream is null)
        {
            Unmet(rule, d.Error is null ? d with { Error = "STOP→STOP_COPY returned no stream" } : d);
            await LeaveAsync(_device, ct).ConfigureAwait(false);
            return;
        }
        var stream = d.Stream;
        var buffer = new byte[_readSize];
        var problems = new List<string>();
        var r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
        var again = await SetAsync(_device, StopCopy, ct).ConfigureAwait(false);
        var after = await GetAsync(_device, ct).ConfigureAwait(false);
        if (!again.Ok)
            problems.Add($"STOP_COPY→STOP_COPY failed with {again.Result.Describe()}");
        if (again.Stream is not null)
            problems.Add("STOP_COPY→STOP_COPY returned a new stream");
        if (after != StopCopy)
            problems.Add($"GET shows {Name(after)} afterwards");
        r = await ReadAsync(stream, buffer, ct).ConfigureAwait(false);
        if (!r.Ok)
            problems.Add($"the open stream failed afterwards with {r.Result.Describe()}");
        await LeaveAsync(_device, ct).ConfigureAwait(false);
        if (problems.Count == 0)
            Pass(rule, "no new stream; the open stream kept reading");
        else
            Fail(rule, string.Join("; ", problems));
    }

    private async Task BrokenResumesAsync(CancellationToken ct)
    {
        const string truncatedRule = "sessions.resume-truncated", reorderedRule = "sessions.resume-reordered";
        Current(truncatedRule);
        var (target, reason) = ResumeTarget();
        if (target is null)
        {
            Skip(truncatedRule, reason!);
            Skip(reorderedRule, reason!);
            return;
        }
        // A rejected load is left by reset only (§2.7); with a reset that keeps RESUMING the device would stay there.
        if (ReferenceEquals(target, _device) && _resetProblems.TryGetValue(Resuming, out var stuck))
        {
            Block(truncatedRule, "probe.reset", $"leaving a rejected load needs a reset that returns RUNNING, and {stuck} (see probe.reset)");
            Block(reorderedRule, "probe.reset", $"leaving a rejected load needs a reset that returns RUNNING, and {stuck} (see probe.reset)");
            return;
        }
        var saved = _savedStream;
        if (saved is null)
        {
            var s = await SaveAsync(_device, ct).ConfigureAwait(false);
            if (s.Error is not null || s.Data is null)
            {
                string why = s.Error is not null ? $"no saved stream to cut: {s.Error}" : $"the saved stream ({s.Length} B) is too large to keep in memory";
                foreach (var id in (string[])[truncatedRule, reorderedRule])
                {
                    if (s.BlockedBy is { } cause)
                        Block(id, cause, why);
                    else
                        Skip(id, why);
                }
                return;
            }
            saved = s.Data;
        }
        if (saved.Length < 2)
        {
            Skip(truncatedRule, $"the saved stream has only {saved.Length} bytes");
            Skip(reorderedRule, $"the saved stream has only {saved.Length} bytes");
            return;
        }

        int half = saved.Length / 2;
        await ExpectRejectedResumeAsync(truncatedRule, target, saved.AsMemory(0, half), $"the first {half} of {saved.Length} bytes", ct).ConfigureAwait(false);

        if (saved.AsSpan(0, half).SequenceEqual(saved.AsSpan(half, half)))
        {
            Skip(reorderedRule, "the two halves of the saved stream are identical, so swapping them changes nothing");
            return;
        }
        var reordered = new byte[saved.Length];
        saved.AsSpan(half, half).CopyTo(reordered);
        saved.AsSpan(0, half).CopyTo(reordered.AsSpan(half));
        saved.AsSpan(2 * half).CopyTo(reordered.AsSpan(2 * half));
        Current(reorderedRule);
        await ExpectRejectedResumeAsync(reorderedRule, target, reordered, $"{saved.Length} bytes with the two {half}-byte halves swapped", ct).ConfigureAwait(false);
    }

    private async Task ExpectRejectedResumeAsync(string rule, IVfioMigrationDevice target, ReadOnlyMemory<byte> data, string what, CancellationToken ct)
    {
        var (stop, after, note, setup) = await ResumeAsync(target, data, ct).ConfigureAwait(false);
        string where = ReferenceEquals(target, _device) ? "the device" : $"peer {target.Name}";
        if (setup.Error is not null)
            Unmet(rule, setup with { Error = $"resuming into {where}: {setup.Error}" });
        else if (stop.Ok)
            Fail(rule, $"RESUMING→STOP accepted {what} (resumed into {where}){(note is null ? "" : "; " + note)}");
        else if (after == Stop)
            Fail(rule, $"RESUMING→STOP failed with {stop.Describe()}, but GET shows STOP");
        else
            Pass(rule, $"{what}: RESUMING→STOP failed with {VfioException.NameOf(stop.Errno)}, GET shows {Name(after)}{(note is null ? "" : "; earlier " + note)} (resumed into {where})");
        await LeaveAsync(target, ct).ConfigureAwait(false);
    }
}
