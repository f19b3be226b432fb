namespace Vfio.Interop;

internal static partial class Interop
{
    internal const int SOL_SOCKET = 1;
    internal const int SCM_RIGHTS = 1;
    internal const int MSG_CTRUNC = 0x8;
    internal const int MSG_TRUNC = 0x20;
    internal const int MSG_DONTWAIT = 0x40;
    internal const int MSG_NOSIGNAL = 0x4000;
    internal const int MSG_CMSG_CLOEXEC = 0x40000000;

    /// <summary>struct msghdr on x86_64 (56 bytes).</summary>
    internal unsafe struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    /// <summary>struct iovec.</summary>
    internal unsafe struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>struct cmsghdr header (16 bytes on x86_64); data follows.</summary>
    internal struct CMsgHdr
    {
        public nuint Len;
        public int Level;
        public int Type;
    }

    internal const int CMsgHdrSize = 16;

    internal static int CMsgLen(int dataLength) => CMsgHdrSize + dataLength;

    internal static int CMsgSpace(int dataLength) => CMsgHdrSize + ((dataLength + 7) & ~7);
}
