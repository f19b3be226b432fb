using System.IO.Pipelines;

namespace Vfio.Engine;

// Completing a pipe end can flush (StreamPipeWriter) or touch a transport that already failed. In a
// finally block such an exception would replace the migration's real outcome, so it is swallowed:
// every frame that matters was flushed when it was written.
internal static class PipeCompletion
{
    public static async ValueTask CompleteQuietlyAsync(PipeWriter writer)
    {
        try
        {
            await writer.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    public static async ValueTask CompleteQuietlyAsync(PipeReader reader)
    {
        try
        {
            await reader.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }
}
