using System.Runtime.CompilerServices;

// Every P/Invoke of the library is a source-generated LibraryImport over blittable types.
[assembly: DisableRuntimeMarshalling]
