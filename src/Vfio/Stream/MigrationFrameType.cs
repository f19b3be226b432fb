namespace Vfio.Stream;

/// <summary>
/// Frame types of the migration stream (source → destination, 0x01–0x3F) and of the return path
/// (destination → source, 0x41–0x7F). See docs/stream-format.md.
/// </summary>
internal enum MigrationFrameType : byte
{
    /// <summary>Forward, per device: the source device's capabilities, stop-copy estimate, plan flags and name.</summary>
    Setup = 0x01,

    /// <summary>Forward, per device: opaque bytes read from the saving stream while the device runs (PRE_COPY).</summary>
    PreCopyData = 0x02,

    /// <summary>Forward, per device: every initial pre-copy byte was sent (switchover-ack request).</summary>
    InitDataSent = 0x03,

    /// <summary>Forward, stream-level: the source starts stopping its devices; stop-copy data follows.</summary>
    Switchover = 0x04,

    /// <summary>Forward, per device: opaque bytes read from the saving stream in STOP_COPY.</summary>
    StopCopyData = 0x05,

    /// <summary>Forward, per device: the device's saving stream reached its end; payload = total data bytes (u64).</summary>
    DeviceEnd = 0x06,

    /// <summary>Forward, stream-level: every device ended; the destination may validate and start.</summary>
    End = 0x07,

    /// <summary>Forward, stream-level: the source gives up; payload = status (errno and words).</summary>
    Abort = 0x08,

    /// <summary>Forward, stream-level, the first frame: the migration id (16 bytes, a UUID in RFC 4122 byte order).</summary>
    Begin = 0x09,

    /// <summary>Forward, stream-level: every device loaded; the source will never restart by itself; the destination may decide committed.</summary>
    Commit = 0x0A,

    /// <summary>Return, per device: the destination device is in RESUMING; payload = its capabilities (u64).</summary>
    Ready = 0x41,

    /// <summary>Return, per device: the destination wrote all initial bytes into the device (switchover-ack).</summary>
    InitDataAck = 0x42,

    /// <summary>Return, per device: result of RESUMING→STOP (validation); payload = status.</summary>
    LoadResult = 0x43,

    /// <summary>Return, stream-level: every destination device is RUNNING; payload = resume time in µs (u64).</summary>
    Complete = 0x44,

    /// <summary>Return, stream-level or per device: the destination failed, reset its devices and will never run them for this migration; payload = status.</summary>
    Error = 0x45,

    /// <summary>Return, stream-level: the destination recorded the decision committed durably; its devices start next.</summary>
    Committed = 0x46,
}
