using System.IO.Pipelines;

namespace Vfio.Engine;

// One set of pipe options for running either half of the engine over byte streams (e.g. TCP).
internal static class StreamPipes
{
    public static PipeWriter Writer(System.IO.Stream stream)
        => PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 1 << 16, leaveOpen: true));

    public static PipeReader Reader(System.IO.Stream stream)
        => PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 1 << 16, minimumReadSize: 1 << 14, leaveOpen: true));
}
