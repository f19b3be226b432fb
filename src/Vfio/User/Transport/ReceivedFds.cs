using Vfio.Interop;

namespace Vfio.User.Transport;

/// <summary>
/// The fds that arrived with one message. A handler claims the ones it uses with <see cref="Take"/>; the rest are
/// closed when the message is disposed (never leak an fd the peer sent on a message that should carry none).
/// </summary>
internal sealed class ReceivedFds : IDisposable
{
    private readonly SafeFdHandle?[] _fds;

    /// <summary>An empty collection.</summary>
    public static ReceivedFds Empty => new([]);

    internal ReceivedFds(SafeFdHandle?[] fds) => _fds = fds;

    /// <summary>How many fds arrived.</summary>
    public int Count => _fds.Length;

    /// <summary>Takes ownership of fd <paramref name="index"/>.</summary>
    /// <exception cref="InvalidOperationException">Already taken.</exception>
    public SafeFdHandle Take(int index)
    {
        var fd = _fds[index] ?? throw new InvalidOperationException($"fd {index} was already claimed");
        _fds[index] = null;
        return fd;
    }

    /// <summary>Closes every fd nobody claimed.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _fds.Length; i++)
        {
            _fds[i]?.Dispose();
            _fds[i] = null;
        }
    }
}
