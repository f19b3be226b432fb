namespace Vfio.Net;

/// <summary>The frame types of a channel after the handshake (docs/network.md, "Frames").</summary>
internal enum NetFrameType : byte
{
    /// <summary>A segment of the migration stream; the sequence number orders it across channels.</summary>
    Data = 1,

    /// <summary>Sender: the migration stream is complete. Sequence = number of segments; payload = u64 total bytes.</summary>
    DataEnd = 2,

    /// <summary>Receiver → sender: bytes of the return path (acks, load results), in order.</summary>
    Return = 3,

    /// <summary>Receiver → sender: the final status (ok/errno, message, digest).</summary>
    Status = 4,

    /// <summary>Either side: the migration is abandoned; payload = i32 errno + UTF-8 reason.</summary>
    Abort = 5,

    /// <summary>Either side: nothing else to say, still alive (stall detection).</summary>
    Keepalive = 6,

    /// <summary>Sender → receiver: the sender saw the final status and is done (closes cleanly).</summary>
    Bye = 7,
}
