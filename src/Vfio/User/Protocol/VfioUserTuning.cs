namespace Vfio.User.Protocol;

/// <summary>
/// Our tuning of the vfio-user transport: values chosen by measurement or for a known peer, neither protocol nor a
/// bound on the peer (docs/performance.md gives the measurements).
/// </summary>
internal static class VfioUserTuning
{
    /// <summary>Chunk size for messages sent to a peer that may short-read (libvfio-user, spec §10.1 item 1).</summary>
    public const int LibVfioUserChunkBytes = 64 << 10;

    /// <summary>
    /// Commands a server connection reads ahead of its worker. Beyond that it stops reading, so a client that sends
    /// without reading replies meets the socket's backpressure instead of growing the server's memory.
    /// </summary>
    public const int MaxQueuedCommands = 64;

    /// <summary>Replies a server connection holds while the client does not read (each up to max_data_xfer_size).</summary>
    public const int MaxQueuedReplies = 4;

    /// <summary>
    /// SO_SNDBUF/SO_RCVBUF asked for on every vfio-user socket: room for a whole default-size data message and the
    /// next. The kernel caps it at net.core.wmem_max/rmem_max (and doubles it for its own bookkeeping).
    /// </summary>
    public const int SocketBufferBytes = 2 << 20;

    /// <summary>
    /// Data of at least this many bytes in an outgoing command (MIG_DATA_WRITE, REGION_WRITE) is sent from the
    /// caller's buffer behind the header in one sendmsg; below it the bytes are copied into the message, which
    /// costs less than the second piece.
    /// </summary>
    public const int GatherDataBytes = 16 << 10;

    /// <summary>
    /// Bytes sent through memory when a socket we splice into is full: a plain send is the runtime's only wait for
    /// room, and a small one keeps almost every relayed byte out of the process.
    /// </summary>
    public const int SpliceBounceBytes = 4 << 10;

    /// <summary>
    /// Room the first STOP_COPY read asks for beyond the device's last MIG_DATA_SIZE answer (with half as much again):
    /// what a running device may dirty between that answer and STOP_COPY. A short reply is padded to the size asked,
    /// so a whole chunk asked for a stop-copy of a few KiB moved up to 1 MiB of zeros inside the downtime.
    /// </summary>
    public const int StopCopyReadSlackBytes = 256 << 10;
}
