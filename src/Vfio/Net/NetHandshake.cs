using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// The versioned hello / challenge / proof / verdict exchange that opens every connection (after TLS, if any).
/// <code>
///  sender                                   receiver
///    hello (64)            ───────────────▶
///                          ◀─────────────── challenge (48 + reason): status, flags, server nonce
///    proof (32)            ───────────────▶   HMAC-SHA256(token, "vfio-mig/1 client" | hello | challenge)
///                          ◀─────────────── verdict (36 + reason): status, server proof
///                                             HMAC-SHA256(token, "vfio-mig/1 server" | hello | challenge | proof)
/// </code>
/// Challenge: magic(8) version(2) status(1) flags(1: bit0 token required) reason-length(2) reserved(2) nonce(32).
/// Verdict: status(1) reserved(1) reason-length(2) server-proof(32). Proofs compare in constant time.
/// </summary>
public static class NetHandshake
{
    private static ReadOnlySpan<byte> ClientLabel => "vfio-mig/1 client"u8;
    private static ReadOnlySpan<byte> ServerLabel => "vfio-mig/1 server"u8;

    /// <summary>Challenge flag: the receiver requires a token proof.</summary>
    public const byte FlagTokenRequired = 1;

    /// <summary>Runs the sender's half. Throws EACCES (refused or receiver unauthenticated) or EPROTO (malformed reply).</summary>
    public static async Task RunClientAsync(Stream stream, NetSecurityOptions security, NetHello hello, string peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(security);
        ArgumentNullException.ThrowIfNull(hello);
        string op = $"handshake with {peer}";
        byte[] helloBytes = hello.Encode();
        await WriteAsync(stream, helloBytes, op, cancellationToken).ConfigureAwait(false);

        byte[] challenge = new byte[NetProtocol.ChallengeSize];
        await ReadExactAsync(stream, challenge, op, "challenge", cancellationToken).ConfigureAwait(false);
        if (challenge[0] == 0x15 || challenge[0] == 0x16)
            throw new VfioException(Errno.EPROTO, op, "the receiver answered with TLS: it requires TLS, give --tls-ca (and --tls-cert/--tls-key for mutual TLS)");
        if (!challenge.AsSpan(0, 8).SequenceEqual(NetProtocol.Magic))
            throw new VfioException(Errno.EPROTO, op, "the peer is not a vfio-mig receiver (bad challenge magic)");
        var status = (NetRefusal)challenge[10];
        byte flags = challenge[11];
        int reasonLength = BinaryPrimitives.ReadUInt16BigEndian(challenge.AsSpan(12));
        string reason = await ReadReasonAsync(stream, reasonLength, op, cancellationToken).ConfigureAwait(false);
        if (status != NetRefusal.None)
            throw Refused(op, status, reason);

        bool tokenRequired = (flags & FlagTokenRequired) != 0;
        byte[] proof = new byte[NetProtocol.ProofSize];
        if (security.Token is { } token)
            proof = Mac(token.Key, ClientLabel, helloBytes, challenge, []);
        await WriteAsync(stream, proof, op, cancellationToken).ConfigureAwait(false);

        byte[] verdict = new byte[NetProtocol.VerdictSize];
        await ReadExactAsync(stream, verdict, op, "verdict", cancellationToken).ConfigureAwait(false);
        status = (NetRefusal)verdict[0];
        reasonLength = BinaryPrimitives.ReadUInt16BigEndian(verdict.AsSpan(2));
        reason = await ReadReasonAsync(stream, reasonLength, op, cancellationToken).ConfigureAwait(false);
        if (status != NetRefusal.None)
            throw Refused(op, status, reason);
        if (security.Token is { } t)
        {
            if (!tokenRequired)
                throw new VfioException(Errno.EACCES, op, "the receiver does not check tokens, so it cannot prove it knows ours: give it the same --token-file");
            byte[] expected = Mac(t.Key, ServerLabel, helloBytes, challenge, proof);
            if (!CryptographicOperations.FixedTimeEquals(expected, verdict.AsSpan(4, 32)))
                throw new VfioException(Errno.EACCES, op, "the receiver's token proof did not match: it holds a different token");
        }
    }

    /// <summary>
    /// Runs the receiver's half. <paramref name="admit"/> may refuse a well-formed hello (unknown session, busy).
    /// Sends the refusal to the sender and throws EACCES/EPROTO here too.
    /// </summary>
    public static async Task<NetHello> RunServerAsync(Stream stream, NetSecurityOptions security, Func<NetHello, (NetRefusal, string?)> admit, string peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(security);
        ArgumentNullException.ThrowIfNull(admit);
        string op = $"handshake with {peer}";
        byte[] helloBytes = new byte[NetProtocol.HelloSize];
        await ReadExactAsync(stream, helloBytes, op, "hello", cancellationToken).ConfigureAwait(false);
        bool tokenRequired = security.Token is not null;
        byte[] challenge = new byte[NetProtocol.ChallengeSize];
        NetProtocol.Magic.CopyTo(challenge);
        BinaryPrimitives.WriteUInt16BigEndian(challenge.AsSpan(8), NetProtocol.Version);
        challenge[11] = tokenRequired ? FlagTokenRequired : (byte)0;
        RandomNumberGenerator.Fill(challenge.AsSpan(16, 32));

        var hello = NetHello.TryDecode(helloBytes, out string? bad);
        if (hello is null || bad is not null)
        {
            await RefuseChallengeAsync(stream, challenge, NetRefusal.BadHello, bad!, cancellationToken).ConfigureAwait(false);
            throw new VfioException(Errno.EPROTO, op, bad!);
        }
        if (hello.Version != NetProtocol.Version)
        {
            string why = $"handshake version {hello.Version} is not supported (this receiver speaks {NetProtocol.Version})";
            await RefuseChallengeAsync(stream, challenge, NetRefusal.VersionMismatch, why, cancellationToken).ConfigureAwait(false);
            throw new VfioException(Errno.EPROTO, op, why);
        }
        var (refusal, reason) = admit(hello);
        if (refusal != NetRefusal.None)
        {
            await RefuseChallengeAsync(stream, challenge, refusal, reason ?? refusal.ToString(), cancellationToken).ConfigureAwait(false);
            throw new VfioException(refusal == NetRefusal.Busy ? Errno.EBUSY : Errno.EACCES, op, reason ?? refusal.ToString());
        }
        await WriteAsync(stream, challenge, op, cancellationToken).ConfigureAwait(false);

        byte[] proof = new byte[NetProtocol.ProofSize];
        await ReadExactAsync(stream, proof, op, "proof", cancellationToken).ConfigureAwait(false);
        byte[] verdict = new byte[NetProtocol.VerdictSize];
        if (security.Token is { } token)
        {
            if ((hello.Flags & NetHello.FlagHasToken) == 0)
            {
                const string why = "this receiver requires a pre-shared token and the sender offered none: give the sender the same --token-file";
                await RefuseVerdictAsync(stream, verdict, NetRefusal.TokenRequired, why, cancellationToken).ConfigureAwait(false);
                throw new VfioException(Errno.EACCES, op, why);
            }
            byte[] expected = Mac(token.Key, ClientLabel, helloBytes, challenge, []);
            if (!CryptographicOperations.FixedTimeEquals(expected, proof))
            {
                const string why = "the sender's token proof did not match: the two sides hold different tokens";
                await RefuseVerdictAsync(stream, verdict, NetRefusal.BadProof, why, cancellationToken).ConfigureAwait(false);
                throw new VfioException(Errno.EACCES, op, why);
            }
            Mac(token.Key, ServerLabel, helloBytes, challenge, proof).CopyTo(verdict.AsSpan(4));
        }
        await WriteAsync(stream, verdict, op, cancellationToken).ConfigureAwait(false);
        return hello;
    }

    /// <summary>Sends a bare refusal challenge (used when a plain sender reaches a TLS-only receiver).</summary>
    public static Task RefusePlainAsync(Stream stream, NetRefusal refusal, string reason, CancellationToken cancellationToken)
    {
        byte[] challenge = new byte[NetProtocol.ChallengeSize];
        NetProtocol.Magic.CopyTo(challenge);
        BinaryPrimitives.WriteUInt16BigEndian(challenge.AsSpan(8), NetProtocol.Version);
        return RefuseChallengeAsync(stream, challenge, refusal, reason, cancellationToken);
    }

    private static VfioException Refused(string op, NetRefusal status, string reason)
        => new(status switch
        {
            NetRefusal.Busy => Errno.EBUSY,
            NetRefusal.VersionMismatch or NetRefusal.BadHello => Errno.EPROTO,
            _ => Errno.EACCES,
        }, op, "the receiver refused: " + (reason.Length > 0 ? reason : status.ToString()));

    private static async Task RefuseChallengeAsync(Stream stream, byte[] challenge, NetRefusal refusal, string reason, CancellationToken cancellationToken)
    {
        byte[] text = Truncate(reason);
        challenge[10] = (byte)refusal;
        BinaryPrimitives.WriteUInt16BigEndian(challenge.AsSpan(12), (ushort)text.Length);
        await TryWriteAsync(stream, [.. challenge, .. text], cancellationToken).ConfigureAwait(false);
    }

    private static async Task RefuseVerdictAsync(Stream stream, byte[] verdict, NetRefusal refusal, string reason, CancellationToken cancellationToken)
    {
        byte[] text = Truncate(reason);
        verdict[0] = (byte)refusal;
        BinaryPrimitives.WriteUInt16BigEndian(verdict.AsSpan(2), (ushort)text.Length);
        await TryWriteAsync(stream, [.. verdict, .. text], cancellationToken).ConfigureAwait(false);
    }

    private static byte[] Truncate(string reason)
    {
        byte[] text = Encoding.UTF8.GetBytes(reason);
        return text.Length > NetProtocol.MaxReasonLength ? text[..NetProtocol.MaxReasonLength] : text;
    }

    private static async Task TryWriteAsync(Stream stream, byte[] bytes, CancellationToken cancellationToken)
    {
        try
        {
            await stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The refusal is best effort: the peer may already be gone.
        }
    }

    private static byte[] Mac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> label, byte[] hello, byte[] challenge, byte[] proof)
    {
        using var h = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        h.AppendData(label);
        h.AppendData(hello);
        h.AppendData(challenge);
        h.AppendData(proof);
        return h.GetHashAndReset();
    }

    private static async Task<string> ReadReasonAsync(Stream stream, int length, string op, CancellationToken cancellationToken)
    {
        if (length == 0)
            return "";
        if (length > NetProtocol.MaxReasonLength)
            throw new VfioException(Errno.EPROTO, op, $"the peer's reason text is {length} bytes, over the limit of {NetProtocol.MaxReasonLength}");
        byte[] text = new byte[length];
        await ReadExactAsync(stream, text, op, "reason", cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(text);
    }

    private static async Task WriteAsync(Stream stream, byte[] bytes, string op, CancellationToken cancellationToken)
    {
        try
        {
            await stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            throw NetErrors.FromIO(e, op);
        }
    }

    private static async Task ReadExactAsync(Stream stream, byte[] buffer, string op, string what, CancellationToken cancellationToken)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n;
            try
            {
                n = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                throw NetErrors.FromIO(e, op);
            }
            if (n == 0)
                throw new VfioException(Errno.ECONNRESET, op, $"the peer closed the connection before its {what} was complete (it may require TLS, or it refused this side's TLS or hello)");
            total += n;
        }
    }
}
