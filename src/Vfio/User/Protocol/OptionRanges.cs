namespace Vfio.User.Protocol;

/// <summary>Range checks shared by the client's and the server's options.</summary>
internal static class OptionRanges
{
    /// <summary>The smallest max_data_xfer_size or write chunk we take as an option: one DMA logging bitmap word's worth of pages needs far less, but below this every message is mostly header.</summary>
    public const int MinDataTransferBytes = 512;

    public static void CheckMessageFds(int maxMessageFds, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(maxMessageFds))] string? name = null)
    {
        if (maxMessageFds is < 0 or > ProtocolLimits.MaxPeerMessageFds)
            throw new ArgumentOutOfRangeException(name, maxMessageFds, $"max_msg_fds must be 0..{ProtocolLimits.MaxPeerMessageFds}");
    }
}
