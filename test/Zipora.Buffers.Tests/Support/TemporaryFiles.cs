using System;
using System.IO;

namespace Zipora.Buffers.Tests;

/// <summary>A temporary directory tree for one test (fake cgroup and mountinfo files), removed with everything in it.</summary>
internal sealed class TemporaryFiles : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("zipora-files-").FullName;

    /// <summary>Creates a directory under the root; returns its full path.</summary>
    public string Create(string relative) => Directory.CreateDirectory(Path.Join(_root, relative)).FullName;

    /// <summary>Writes a file directly under the root; returns its full path.</summary>
    public string Write(string name, string text)
    {
        string path = Path.Join(_root, name);
        File.WriteAllText(path, text);
        return path;
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
