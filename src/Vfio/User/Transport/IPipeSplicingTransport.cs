using Vfio.User.Protocol;

namespace Vfio.User.Transport;

/// <summary>
/// A transport that can move a message's data between its socket and a <see cref="KernelPipe"/> with
/// <c>splice(2)</c>, so relayed migration data is never copied into the process (<see cref="UnixFdSocket"/>).
/// </summary>
internal interface IPipeSplicingTransport
{
    /// <summary>
    /// Receives up to <paramref name="count"/> next payload bytes of the message <paramref name="header"/> announced
    /// into <paramref name="pipe"/>. Returns the bytes moved: all of them, or fewer when the pipe filled up first (the
    /// rest stays in the stream for <see cref="IVfioUserTransport.ReceivePayloadAsync"/>).
    /// </summary>
    /// <exception cref="VfioUserProtocolException">End of stream inside the payload.</exception>
    ValueTask<int> ReceiveIntoPipeAsync(VfioUserHeader header, KernelPipe pipe, int count, CancellationToken cancellationToken = default);

    /// <summary>Sends <paramref name="message"/> then <paramref name="count"/> bytes out of <paramref name="pipe"/> as one message, with nothing between.</summary>
    ValueTask SendWithPipeAsync(ReadOnlyMemory<byte> message, KernelPipe pipe, int count, CancellationToken cancellationToken = default);
}
