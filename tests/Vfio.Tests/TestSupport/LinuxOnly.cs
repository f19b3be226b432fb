// The library and its tests run on Linux only (VFIO, memfd, POSIX file modes).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
