namespace Vfio.User.Client;

/// <summary>Where the reader wants a reply's data: its buffer, held in a kernel pipe, or (default) nowhere.</summary>
internal readonly record struct MigDataPlacement(Memory<byte> Buffer, bool Hold);
