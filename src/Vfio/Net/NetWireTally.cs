using System.Diagnostics;
using Vfio.Diagnostics;

namespace Vfio.Net;

/// <summary>
/// Frames and payload bytes one channel moved, by direction and <see cref="NetFrameType"/>: the bounded summary of the
/// wire a flight record keeps (<c>wire</c> events), and the <c>vfio.net.frames</c>/<c>vfio.net.bytes</c> metrics.
/// </summary>
internal sealed class NetWireTally
{
    private const int Types = 8; // NetFrameType values 1..7; 0 collects anything else
    private readonly long[] _frames = new long[2 * Types];
    private readonly long[] _bytes = new long[2 * Types];

    /// <summary>Counts one frame.</summary>
    internal void Count(bool sent, NetFrameType type, int payloadBytes)
    {
        int i = (sent ? 0 : Types) + ((int)type is > 0 and < Types ? (int)type : 0);
        Interlocked.Increment(ref _frames[i]);
        Interlocked.Add(ref _bytes[i], payloadBytes);
        if (MigrationTelemetry.NetFrames.Enabled || MigrationTelemetry.NetBytes.Enabled)
        {
            var tags = new TagList { { MigrationTelemetry.DirectionTag, sent ? "transmit" : "receive" }, { MigrationTelemetry.FrameTypeTag, TypeName(type) } };
            MigrationTelemetry.NetFrames.Add(1, tags);
            MigrationTelemetry.NetBytes.Add(payloadBytes, tags);
        }
    }

    /// <summary>Every (direction, type) with at least one frame: sent = true for frames written.</summary>
    public IReadOnlyList<(bool Sent, string Type, long Frames, long Bytes)> Snapshot()
    {
        var list = new List<(bool, string, long, long)>();
        for (int i = 0; i < 2 * Types; i++)
        {
            long frames = Interlocked.Read(ref _frames[i]);
            if (frames > 0)
                list.Add((i < Types, TypeName((NetFrameType)(i % Types)), frames, Interlocked.Read(ref _bytes[i])));
        }
        return list;
    }

    /// <summary>Adds the tallies of several channels.</summary>
    public static IReadOnlyList<(bool Sent, string Type, long Frames, long Bytes)> Sum(IEnumerable<NetWireTally> tallies)
        => [.. tallies.SelectMany(t => t.Snapshot())
            .GroupBy(x => (x.Sent, x.Type))
            .Select(g => (g.Key.Sent, g.Key.Type, g.Sum(x => x.Frames), g.Sum(x => x.Bytes)))];

    private static string TypeName(NetFrameType type) => type switch
    {
        NetFrameType.Data => "data",
        NetFrameType.DataEnd => "data_end",
        NetFrameType.Return => "return",
        NetFrameType.Status => "status",
        NetFrameType.Abort => "abort",
        NetFrameType.Keepalive => "keepalive",
        NetFrameType.Bye => "bye",
        _ => "other",
    };
}
