using System.Buffers;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Vfio.Stream;

namespace Vfio.Benchmarks;

/// <summary>
/// The engine's wire format for 1 MiB STOP_COPY data frames: the codec on a flat buffer (header, payload
/// copy, CRC-32C trailer; parse and check), and the writer and reader over an in-memory pipe.
/// </summary>
[MemoryDiagnoser]
public class MigrationStreamBenchmarks
{
    private const int PayloadBytes = 1 << 20;
    private byte[] _payload = [];
    private byte[] _frame = [];
    private Pipe _pipe = null!;
    private MigrationStreamWriter _writer = null!;
    private MigrationStreamReader _reader = null!;

    [GlobalSetup]
    public async Task Setup()
    {
        _payload = new byte[PayloadBytes];
        new Random(1).NextBytes(_payload);
        _frame = new byte[MigrationFrameCodec.FrameSize(PayloadBytes)];
        MigrationFrameCodec.WriteFrame(_frame, MigrationFrameType.StopCopyData, 0, 0, _payload);

        // No back-pressure: each operation writes one frame and reads it back on the same thread.
        _pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 64L << 20, resumeWriterThreshold: 32L << 20, useSynchronizationContext: false));
        _writer = new MigrationStreamWriter(_pipe.Writer, MigrationStreamKind.Forward, 1);
        _reader = new MigrationStreamReader(_pipe.Reader, MigrationStreamKind.Forward);
        await _writer.WritePreambleAsync();
        await _reader.ReadPreambleAsync();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pipe.Writer.Complete();
        _pipe.Reader.Complete();
    }

    /// <summary>Codec: header + 1 MiB payload copy + CRC-32C trailer into a flat buffer.</summary>
    [Benchmark]
    public int EncodeFrame() => MigrationFrameCodec.WriteFrame(_frame, MigrationFrameType.StopCopyData, 0, 0, _payload);

    /// <summary>Codec: parse and CRC-check one 1 MiB frame from a single-segment sequence.</summary>
    [Benchmark]
    public int DecodeFrame()
    {
        var buffer = new ReadOnlySequence<byte>(_frame);
        if (!MigrationFrameCodec.TryReadFrame(ref buffer, MigrationFrameCodec.DefaultMaxPayload, 0, 1, out var frame))
            throw new InvalidOperationException("incomplete frame");
        return frame.Length;
    }

    /// <summary>MigrationStreamWriter.WriteFrameAsync then MigrationStreamReader.ReadFrameAsync through a pipe.</summary>
    [Benchmark]
    public async Task<int> WriteReadFrameThroughPipe()
    {
        await _writer.WriteFrameAsync(MigrationFrameType.StopCopyData, 0, _payload);
        var frame = await _reader.ReadFrameAsync() ?? throw new InvalidOperationException("stream ended");
        return frame.Length;
    }
}
