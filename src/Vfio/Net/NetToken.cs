using System.Security.Cryptography;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Vfio.Net;

/// <summary>
/// A pre-shared migration token: a random key of at least 128 bits. It is a key by construction, never a password,
/// so a recorded handshake gives an attacker nothing to guess. As text (a token file):
/// <code>
///   vfiomig1_&lt;64 hex digits: the 256-bit key&gt;_&lt;8 hex digits: check&gt;
/// </code>
/// The check is the first 4 bytes of SHA-256 over the text before it (<c>vfiomig1_</c> and the key digits), so a
/// mistyped or truncated token, and any text that was not made by <see cref="New"/> (a password), is refused with
/// a pointer to <c>vfio-mig token new</c>.
/// </summary>
public sealed class NetToken
{
    /// <summary>The text prefix; the digit is the format version.</summary>
    public const string Prefix = "vfiomig1_";

    /// <summary>Bytes of key in a token made by <see cref="New"/> (256 bits).</summary>
    public const int KeyBytes = 32;

    /// <summary>Fewest key bytes accepted (128 bits).</summary>
    public const int MinKeyBytes = 16;

    /// <summary>Most key bytes accepted.</summary>
    public const int MaxKeyBytes = 64;

    private const int CheckBytes = 4;
    private const string HowToMakeOne = "create one with `vfio-mig token new --output FILE` and give the same file to both sides";

    private readonly byte[] _key;

    private NetToken(byte[] key) => _key = key;

    /// <summary>The key (what the handshake's MACs and key derivation use).</summary>
    public ReadOnlySpan<byte> Key => _key;

    /// <summary>A new token with <see cref="KeyBytes"/> bytes from the system's cryptographic random source.</summary>
    public static NetToken New() => new(RandomNumberGenerator.GetBytes(KeyBytes));

    /// <summary>A token from raw key bytes (<see cref="MinKeyBytes"/>..<see cref="MaxKeyBytes"/>), for callers that manage keys themselves.</summary>
    public static NetToken FromKey(ReadOnlySpan<byte> key)
    {
        if (key.Length is < MinKeyBytes or > MaxKeyBytes)
            throw new VfioException(Errno.EINVAL, "token", $"a token key must be {MinKeyBytes}..{MaxKeyBytes} random bytes (at least 128 bits), not {key.Length}: {HowToMakeOne}");
        return new NetToken(key.ToArray());
    }

    /// <summary>The text form (what a token file holds, without the newline).</summary>
    public string Format()
    {
        string body = Prefix + Convert.ToHexStringLower(_key);
        return body + "_" + Convert.ToHexStringLower(Check(body));
    }

    /// <summary>
    /// Parses the text form (surrounding white space ignored). EINVAL with plain words for anything else: a
    /// password or other hand-made text, a truncated or mistyped token.
    /// </summary>
    public static NetToken Parse(string text, string what = "token")
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim();
        if (!t.StartsWith(Prefix, StringComparison.Ordinal))
            throw new VfioException(Errno.EINVAL, what, $"this is not a vfio-mig token (they start with {Prefix}); a password or other chosen text can be guessed from a recorded handshake, so only generated tokens are accepted: {HowToMakeOne}");
        int split = t.LastIndexOf('_');
        if (split < Prefix.Length)
            split = t.Length; // no check part: malformed below
        string body = t[..split], hexKey = t[Prefix.Length..split], hexCheck = split < t.Length ? t[(split + 1)..] : "";
        if (hexCheck.Length != 2 * CheckBytes || hexKey.Length % 2 != 0 || hexKey.Length / 2 is < MinKeyBytes or > MaxKeyBytes
            || !IsLowerHex(hexKey) || !IsLowerHex(hexCheck))
            throw new VfioException(Errno.EINVAL, what, $"the token is malformed (expected {Prefix}, {2 * KeyBytes} hex digits, _ and {2 * CheckBytes} hex digits): it was truncated or edited; copy it again, or {HowToMakeOne}");
        if (!CryptographicOperations.FixedTimeEquals(Check(body), Convert.FromHexString(hexCheck)))
            throw new VfioException(Errno.EINVAL, what, $"the token's check digits do not match: it was mistyped or damaged; copy it again, or {HowToMakeOne}");
        return new NetToken(Convert.FromHexString(hexKey));
    }

    /// <summary>
    /// Reads a token file. Refuses (EACCES) a file that its group or others may read or write, with the chmod that
    /// fixes it; the size is bounded before reading.
    /// </summary>
    public static NetToken ReadFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string op = $"read token file {path}";
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException("token files need POSIX permissions");
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new VfioException(Errno.ENOENT, op, $"no such file: {HowToMakeOne}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new VfioException(Errno.EACCES, op, "permission denied", e);
        }
        catch (IOException e)
        {
            throw new VfioException(Errno.EIO, op, e.Message, e);
        }
        using (handle)
        {
            // Checked on the open file, so a rename between the check and the read cannot swap it.
            var mode = File.GetUnixFileMode(handle);
            const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            if ((mode & others) != 0)
                throw new VfioException(Errno.EACCES, op, $"the file is open to other users (mode {Convert.ToString((int)mode, 8).PadLeft(4, '0')}), so the token may be known to them: run `chmod 600 {path}` (and make a new token if others may have read it)");
            long length = RandomAccess.GetLength(handle);
            const int maxText = 256;
            if (length > maxText)
                throw new VfioException(Errno.EINVAL, op, $"the file holds {length} bytes, more than a token ({maxText} at most): {HowToMakeOne}");
            byte[] bytes = new byte[length];
            int n = RandomAccess.Read(handle, bytes, 0);
            string text;
            try
            {
                text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes, 0, n);
            }
            catch (DecoderFallbackException)
            {
                text = "";
            }
            return Parse(text, op);
        }
    }

    /// <summary>Writes a new file holding <see cref="Format"/> and a newline, created with mode 0600; EEXIST if it exists.</summary>
    public void WriteNewFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string op = $"write token file {path}";
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException("token files need POSIX permissions");
        try
        {
            using var stream = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
            stream.Write(Encoding.ASCII.GetBytes(Format() + "\n"));
        }
        catch (IOException e) when (File.Exists(path) && e is not FileNotFoundException)
        {
            throw new VfioException(Errno.EEXIST, op, "the file exists; a token file is never overwritten (remove it first if it should be replaced)", e);
        }
        catch (Exception e) when (e is DirectoryNotFoundException or FileNotFoundException)
        {
            throw new VfioException(Errno.ENOENT, op, "the directory does not exist", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new VfioException(Errno.EACCES, op, "permission denied", e);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => "NetToken(hidden)";

    private static byte[] Check(string body) => SHA256.HashData(Encoding.ASCII.GetBytes(body))[..CheckBytes];

    private static bool IsLowerHex(string s)
    {
        foreach (char c in s)
        {
            if (c is not ((>= '0' and <= '9') or (>= 'a' and <= 'f')))
                return false;
        }
        return true;
    }
}
