using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// The versioned hello / challenge / proof / verdict exchange that opens every connection (after TLS, if any).
/// The receiver proves itself first, so a sender never hands its proof to a receiver that has not shown it holds
/// the key:
/// <code>
///  sender                                   receiver
///    hello (64)            ───────────────▶   sender nonce, flags (bit0 will prove a key, bit1 sealed frames)
///                          ◀─────────────── challenge (48): status, flags (bit0 proves a key, bit1 sealed), receiver nonce
///                          ◀─────────────── receiver proof (32)  (a refusal has its reason text here instead)
///    sender proof (32)     ───────────────▶
///                          ◀─────────────── verdict (4 + reason): status
///
///  receiver proof = HMAC-SHA256(P, "vfio-mig/2 receiver" | B | hello | challenge)
///  sender proof   = HMAC-SHA256(P, "vfio-mig/2 sender"   | B | hello | challenge | receiver proof)
/// </code>
/// P is the proof key: the token's key on the control channel, a key derived from the session secret on data
/// channels (<see cref="NetKeySchedule"/>); without one (TLS only, or --insecure) the proofs are zeros. B binds the
/// proofs to the TLS connection (SHA-256 of the receiver's certificate, empty without TLS), so a TLS interceptor
/// with another certificate cannot relay them. Challenge: magic(8) version(2) status(1) flags(1) reason-length(2)
/// reserved(2) nonce(32). Verdict: status(1) reserved(1) reason-length(2). Proofs compare in constant time.
/// </summary>
internal static class NetHandshake
{
    private static ReadOnlySpan<byte> SenderLabel => "vfio-mig/2 sender"u8;
    private static ReadOnlySpan<byte> ReceiverLabel => "vfio-mig/2 receiver"u8;

    /// <summary>Challenge flag: the receiver proves a key (and requires the sender's proof).</summary>
    public const byte FlagProves = 1;

    /// <summary>Hello and challenge flag: this side seals every frame (it has TLS or a token).</summary>
    public const byte FlagSealed = 2;

    /// <summary>
    /// Runs the sender's half. <paramref name="sessionSecret"/> is null on the control channel and the control
    /// channel's session secret on data channels. Throws EACCES (refused or receiver unauthenticated) or EPROTO.
    /// </summary>
    public static async Task<NetHandshakeResult> RunClientAsync(Stream stream, NetSecurityOptions security, NetHello hello, byte[] binding, byte[]? sessionSecret, string peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(security);
        ArgumentNullException.ThrowIfNull(hello);
        string op = $"handshake with {peer}";
        byte[] helloBytes = hello.Encode();
        await WriteAsync(stream, helloBytes, op, cancellationToken).ConfigureAwait(false);

        byte[] challenge = new byte[NetProtocol.ChallengeSize + NetProtocol.ProofSize];
        await ReadExactAsync(stream, challenge.AsMemory(0, NetProtocol.ChallengeSize), op, "challenge", cancellationToken).ConfigureAwait(false);
        if (challenge[0] == 0x15 || challenge[0] == 0x16)
            throw new VfioException(Errno.EPROTO, op, "the receiver answered with TLS: it requires TLS, give --tls-ca (and --tls-cert/--tls-key for mutual TLS)");
        if (!challenge.AsSpan(0, 8).SequenceEqual(NetProtocol.Magic))
            throw new VfioException(Errno.EPROTO, op, "the peer is not a vfio-mig receiver (bad challenge magic)");
        var status = (NetRefusal)challenge[10];
        byte flags = challenge[11];
        int reasonLength = BinaryPrimitives.ReadUInt16BigEndian(challenge.AsSpan(12));
        if (status != NetRefusal.None)
            throw Refused(op, status, await ReadReasonAsync(stream, reasonLength, op, cancellationToken).ConfigureAwait(false));
        if (reasonLength != 0)
            throw new VfioException(Errno.EPROTO, op, "the receiver's challenge is malformed (a reason text on an acceptance)");
        await ReadExactAsync(stream, challenge.AsMemory(NetProtocol.ChallengeSize), op, "proof", cancellationToken).ConfigureAwait(false);

        bool sealedFrames = security.SealsFrames;
        if (((flags & FlagSealed) != 0) != sealedFrames)
            throw new VfioException(Errno.EACCES, op, sealedFrames
                ? "the receiver runs --insecure (frames neither authenticated nor encrypted); this sender refuses that: give both sides the same --token-file, or TLS"
                : "the receiver protects every frame but this sender runs --insecure: give it the receiver's --token-file or TLS options");
        byte[]? proofKey = ProofKey(security, hello.IsControl, sessionSecret);
        byte[] proof = new byte[NetProtocol.ProofSize];
        if (proofKey is not null)
        {
            // Nothing of ours leaves before the receiver has proven the key.
            if ((flags & FlagProves) == 0)
                throw new VfioException(Errno.EACCES, op, "the receiver does not check tokens, so it cannot prove it knows ours: give it the same --token-file");
            byte[] expected = Mac(proofKey, ReceiverLabel, binding, helloBytes, challenge.AsSpan(0, NetProtocol.ChallengeSize));
            if (!CryptographicOperations.FixedTimeEquals(expected, challenge.AsSpan(NetProtocol.ChallengeSize)))
            {
                // Zeros tell the receiver "refused" and reveal nothing; then the refusal below.
                await TryWriteAsync(stream, new byte[NetProtocol.ProofSize], cancellationToken).ConfigureAwait(false);
                throw new VfioException(Errno.EACCES, op, "the receiver's token proof did not match: the two sides hold different tokens" + (binding.Length > 0 ? ", or the TLS connection is intercepted" : ""));
            }
            proof = Mac(proofKey, SenderLabel, binding, helloBytes, challenge);
        }
        else if ((flags & FlagProves) != 0)
        {
            throw new VfioException(Errno.EACCES, op, "the receiver requires a pre-shared token and this sender has none: give it the same --token-file");
        }
        await WriteAsync(stream, proof, op, cancellationToken).ConfigureAwait(false);

        byte[] verdict = new byte[NetProtocol.VerdictSize];
        await ReadExactAsync(stream, verdict, op, "verdict", cancellationToken).ConfigureAwait(false);
        status = (NetRefusal)verdict[0];
        reasonLength = BinaryPrimitives.ReadUInt16BigEndian(verdict.AsSpan(2));
        string reason = await ReadReasonAsync(stream, reasonLength, op, cancellationToken).ConfigureAwait(false);
        if (status != NetRefusal.None)
            throw Refused(op, status, reason);
        return Result(security, hello, helloBytes, challenge, binding, sessionSecret, sender: true);
    }

    /// <summary>
    /// Runs the receiver's half. <paramref name="admit"/> may refuse a well-formed hello (unknown session, busy).
    /// <paramref name="sessionSecretFor"/>: the secret of the session a data channel names (null for a control channel,
    /// or when no such session is open). Sends a refusal to the sender and throws EACCES/EPROTO here too.
    /// </summary>
    public static async Task<NetHandshakeResult> RunServerAsync(Stream stream, NetSecurityOptions security, Func<NetHello, (NetRefusal, string?)> admit, byte[] binding, Func<NetHello, Task<byte[]?>> sessionSecretFor, string peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(security);
        ArgumentNullException.ThrowIfNull(admit);
        string op = $"handshake with {peer}";
        byte[] helloBytes = new byte[NetProtocol.HelloSize];
        await ReadExactAsync(stream, helloBytes, op, "hello", cancellationToken).ConfigureAwait(false);
        bool sealedFrames = security.SealsFrames;
        byte[] challenge = new byte[NetProtocol.ChallengeSize + NetProtocol.ProofSize];
        NetProtocol.Magic.CopyTo(challenge);
        BinaryPrimitives.WriteUInt16BigEndian(challenge.AsSpan(8), NetProtocol.Version);
        RandomNumberGenerator.Fill(challenge.AsSpan(16, 32));

        var hello = NetHello.TryDecode(helloBytes, out string? bad);
        if (hello is null || bad is not null)
        {
            await RefuseChallengeAsync(stream, challenge, NetRefusal.BadHello, bad!, cancellationToken).ConfigureAwait(false);
            throw new VfioException(Errno.EPROTO, op, bad!);
        }
        if (hello.Version != NetProtocol.Version)
        {
            string why = $"protocol version {hello.Version} is not supported (this receiver speaks {NetProtocol.Version}): run the same vfio-mig version on both hosts";
            await RefuseChallengeAsync(stream, challenge, NetRefusal.VersionMismatch, why, cancellationToken).ConfigureAwait(false);
            throw new VfioException(Errno.EPROTO, op, why);
        }
        var (refusal, reason) = admit(hello);
        if (refusal == NetRefusal.None)
            (refusal, reason) = Compatible(security, hello);
        byte[]? sessionSecret = null;
        if (refusal == NetRefusal.None && !hello.IsControl && security.SealsFrames)
        {
            sessionSecret = await sessionSecretFor(hello).WaitAsync(cancellationToken).ConfigureAwait(false);
            if (sessionSecret is null)
                (refusal, reason) = (NetRefusal.UnknownSession, "the data channel does not belong to the open session");
        }
        if (refusal != NetRefusal.None)
        {
            await RefuseChallengeAsync(stream, challenge, refusal, reason ?? refusal.ToString(), cancellationToken).ConfigureAwait(false);
            throw new VfioException(refusal == NetRefusal.Busy ? Errno.EBUSY : Errno.EACCES, op, reason ?? refusal.ToString());
        }
        byte[]? proofKey = ProofKey(security, hello.IsControl, sessionSecret);
        challenge[11] = (byte)((proofKey is null ? 0 : FlagProves) | (sealedFrames ? FlagSealed : 0));
        if (proofKey is not null)
            Mac(proofKey, ReceiverLabel, binding, helloBytes, challenge.AsSpan(0, NetProtocol.ChallengeSize)).CopyTo(challenge, NetProtocol.ChallengeSize);
        await WriteAsync(stream, challenge, op, cancellationToken).ConfigureAwait(false);

        byte[] proof = new byte[NetProtocol.ProofSize];
        await ReadExactAsync(stream, proof, op, "proof", cancellationToken).ConfigureAwait(false);
        byte[] verdict = new byte[NetProtocol.VerdictSize];
        if (proofKey is not null && !CryptographicOperations.FixedTimeEquals(Mac(proofKey, SenderLabel, binding, helloBytes, challenge), proof))
        {
            string why = hello.IsControl
                ? "the sender's token proof did not match (or it refused ours): the two sides hold different tokens"
                : "the data channel's proof did not match the session: it does not come from the sender of the control channel";
            await RefuseVerdictAsync(stream, verdict, NetRefusal.BadProof, why, cancellationToken).ConfigureAwait(false);
            throw new VfioException(Errno.EACCES, op, why);
        }
        await WriteAsync(stream, verdict, op, cancellationToken).ConfigureAwait(false);
        return Result(security, hello, helloBytes, challenge, binding, sessionSecret, sender: false);
    }

    // What the receiver refuses before it says anything about keys: a sender whose protection differs from its own.
    private static (NetRefusal, string?) Compatible(NetSecurityOptions security, NetHello hello)
    {
        bool senderSeals = (hello.Flags & NetHello.FlagSealed) != 0;
        if (hello.IsControl && security.Token is not null && (hello.Flags & NetHello.FlagHasToken) == 0)
            return (NetRefusal.TokenRequired, "this receiver requires a pre-shared token and the sender offered none: give the sender the same --token-file");
        if (senderSeals && !security.SealsFrames)
            return (NetRefusal.TokenRequired, "this receiver runs --insecure and has no token, so it cannot prove the sender's: give it the same --token-file");
        if (!senderSeals && security.SealsFrames)
            return (NetRefusal.TokenRequired, "this receiver protects every frame and the sender runs --insecure: give the sender the same --token-file or TLS options");
        return (NetRefusal.None, null);
    }

    private static byte[]? ProofKey(NetSecurityOptions security, bool control, byte[]? sessionSecret)
    {
        if (!control)
            return sessionSecret is null ? null : NetKeySchedule.DataChannelProofKey(sessionSecret);
        return security.Token?.Key.ToArray();
    }

    private static NetHandshakeResult Result(NetSecurityOptions security, NetHello hello, byte[] helloBytes, byte[] challenge, byte[] binding, byte[]? sessionSecret, bool sender)
    {
        if (!security.SealsFrames)
            return new NetHandshakeResult(hello, null, null);
        byte[] secret = hello.IsControl ? NetKeySchedule.SessionSecret(security.Token, binding, helloBytes, challenge) : sessionSecret!;
        return new NetHandshakeResult(hello, secret, NetKeySchedule.ChannelKeys(secret, helloBytes, challenge, sender));
    }

    /// <summary>Sends a bare refusal challenge (used when a plain sender reaches a TLS-only receiver).</summary>
    internal static Task RefusePlainAsync(Stream stream, NetRefusal refusal, string reason, CancellationToken cancellationToken)
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

    // A refusal is the fixed 48 bytes and the reason, never a proof: readable by any version's sender.
    private static async Task RefuseChallengeAsync(Stream stream, byte[] challenge, NetRefusal refusal, string reason, CancellationToken cancellationToken)
    {
        byte[] text = Truncate(reason);
        challenge[10] = (byte)refusal;
        BinaryPrimitives.WriteUInt16BigEndian(challenge.AsSpan(12), (ushort)text.Length);
        await TryWriteAsync(stream, [.. challenge.AsSpan(0, NetProtocol.ChallengeSize), .. text], cancellationToken).ConfigureAwait(false);
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

    private static byte[] Mac(byte[] key, ReadOnlySpan<byte> label, byte[] binding, byte[] hello, ReadOnlySpan<byte> challenge)
    {
        using var h = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        h.AppendData(label);
        h.AppendData([(byte)binding.Length]);
        h.AppendData(binding);
        h.AppendData(hello);
        h.AppendData(challenge);
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

    private static async Task ReadExactAsync(Stream stream, Memory<byte> buffer, string op, string what, CancellationToken cancellationToken)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n;
            try
            {
                n = await stream.ReadAsync(buffer[total..], cancellationToken).ConfigureAwait(false);
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

/// <summary>What a completed handshake yields: the hello, and with sealed frames the session secret and the channel's keys.</summary>
internal sealed record NetHandshakeResult(NetHello Hello, byte[]? SessionSecret, NetChannelKeys? Keys);
