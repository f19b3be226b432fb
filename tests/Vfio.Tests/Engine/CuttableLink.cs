using System.IO.Pipelines;

namespace Vfio.Tests.Engine;

/// <summary>How a <see cref="CuttableLink"/> direction fails.</summary>
public enum CutMode
{
    /// <summary>The receiving end sees a clean end of stream (FIN); the sending end a closed reader.</summary>
    Fin,

    /// <summary>The receiving end sees an IOException (RST).</summary>
    Reset,

    /// <summary>Bytes stop moving; nothing ends until the link is disposed.</summary>
    Stall,
}

/// <summary>
/// Two relays between an engine source and destination (forward stream and return path) that a test can cut at
/// any moment, like a fault proxy between two hosts.
/// </summary>
internal sealed class CuttableLink : IAsyncDisposable
{
    private readonly Pipe _sourceOut = new(new PipeOptions(useSynchronizationContext: false));
    private readonly Pipe _destinationIn = new(new PipeOptions(useSynchronizationContext: false));
    private readonly Pipe _destinationOut = new(new PipeOptions(useSynchronizationContext: false));
    private readonly Pipe _sourceIn = new(new PipeOptions(useSynchronizationContext: false));
    private readonly CancellationTokenSource _forwardCut = new();
    private readonly CancellationTokenSource _returnCut = new();
    private readonly CancellationTokenSource _dispose = new();
    private readonly Task _forward;
    private readonly Task _return;
    private CutMode _forwardMode;
    private CutMode _returnMode;

    public CuttableLink()
    {
        _forward = Task.Run(() => PumpAsync(_sourceOut.Reader, _destinationIn.Writer, () => _forwardMode, _forwardCut.Token));
        _return = Task.Run(() => PumpAsync(_destinationOut.Reader, _sourceIn.Writer, () => _returnMode, _returnCut.Token));
    }

    public PipeWriter SourceOutput => _sourceOut.Writer;

    public PipeReader SourceReturnPath => _sourceIn.Reader;

    public PipeReader DestinationInput => _destinationIn.Reader;

    public PipeWriter DestinationReturnPath => _destinationOut.Writer;

    public void CutForward(CutMode mode)
    {
        _forwardMode = mode;
        _forwardCut.Cancel();
    }

    public void CutReturn(CutMode mode)
    {
        _returnMode = mode;
        _returnCut.Cancel();
    }

    private async Task PumpAsync(PipeReader from, PipeWriter to, Func<CutMode> mode, CancellationToken cut)
    {
        try
        {
            while (true)
            {
                var r = await from.ReadAsync(cut);
                foreach (var segment in r.Buffer)
                {
                    var flush = await to.WriteAsync(segment, cut);
                    if (flush.IsCompleted)
                        throw new IOException("the receiving end is gone");
                }
                from.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted)
                    break;
            }
            await to.CompleteAsync();
            await from.CompleteAsync();
        }
        catch (OperationCanceledException) when (cut.IsCancellationRequested)
        {
            if (mode() == CutMode.Stall)
            {
                try
                {
                    await Task.Delay(Timeout.Infinite, _dispose.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
            await to.CompleteAsync(mode() == CutMode.Reset ? new IOException("connection reset by the link") : null);
            await from.CompleteAsync();
        }
        catch (IOException e)
        {
            await to.CompleteAsync(e);
            await from.CompleteAsync(e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _dispose.CancelAsync();
        await _forwardCut.CancelAsync();
        await _returnCut.CancelAsync();
        await Task.WhenAll(_forward, _return).WaitAsync(TimeSpan.FromSeconds(30));
        _forwardCut.Dispose();
        _returnCut.Dispose();
        _dispose.Dispose();
    }
}
