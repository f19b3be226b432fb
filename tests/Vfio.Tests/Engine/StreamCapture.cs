using System.IO.Pipelines;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Tests.Engine;

/// <summary>Runs a migration through a recording pump and decodes what crossed the forward stream.</summary>
internal static class StreamCapture
{
    public static async Task<(byte[] Bytes, MigrationStatistics Statistics)> MigrateAsync(IReadOnlyList<IVfioMigrationDevice> sources, IReadOnlyList<IVfioMigrationDevice> destinations, MigrationOptions? options = null)
    {
        var ct = TestContext.Current.CancellationToken;
        var a = new Pipe();
        var b = new Pipe();
        var back = new Pipe();
        var recorded = new MemoryStream();
        var pump = Task.Run(async () =>
        {
            while (true)
            {
                var r = await a.Reader.ReadAsync(ct);
                foreach (var seg in r.Buffer)
                {
                    recorded.Write(seg.Span);
                    await b.Writer.WriteAsync(seg, ct);
                }
                a.Reader.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted)
                    break;
            }
            await b.Writer.CompleteAsync();
        }, ct);
        var destination = Task.Run(() => new MigrationDestination(destinations, options).RunAsync(b.Reader, back.Writer, null, ct), ct);
        var stats = await new MigrationSource(sources, options).RunAsync(a.Writer, back.Reader, null, ct);
        await destination;
        await pump;
        return (recorded.ToArray(), stats);
    }

    public static async Task<List<(MigrationFrameType Type, ushort Device, int Length)>> DecodeAsync(byte[] bytes)
    {
        var reader = new MigrationStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(bytes)), MigrationStreamKind.Forward);
        await reader.ReadPreambleAsync(TestContext.Current.CancellationToken);
        var frames = new List<(MigrationFrameType, ushort, int)>();
        while (await reader.ReadFrameAsync(TestContext.Current.CancellationToken) is { } f)
            frames.Add((f.Type, f.Device, f.Length));
        return frames;
    }
}
