namespace Vfio.User.Protocol;

/// <summary>Header flags (spec §3): bits 0–3 type, bit 4 NO_REPLY, bit 5 ERROR.</summary>
[Flags]
internal enum VfioUserMessageFlags : uint
{
    /// <summary>Type 0: a command.</summary>
    Command = 0,
    /// <summary>Type 1: a reply.</summary>
    Reply = 1,
    /// <summary>Mask of the type field.</summary>
    TypeMask = 0xF,
    /// <summary>The sender wants no reply.</summary>
    NoReply = 0x10,
    /// <summary>The reply carries an errno.</summary>
    Error = 0x20,
    /// <summary>Every bit the protocol defines.</summary>
    Known = TypeMask | NoReply | Error,
}
