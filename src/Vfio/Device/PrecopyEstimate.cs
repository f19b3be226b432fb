namespace Vfio.Device;

/// <summary>
/// What VFIO_MIG_GET_PRECOPY_INFO reports (spec §4.6–§4.7): initial bytes still unread, dirty bytes,
/// and whether new initial data appeared (REINIT, only reported after the v2 opt-in).
/// </summary>
public readonly record struct PrecopyEstimate(ulong InitialBytes, ulong DirtyBytes, bool Reinit = false);
