using System.IO;
using System.Reflection;
using System.Runtime.Loader;

namespace Zipora.Buffers.Tests;

/// <summary>
/// A collectible load context as a plugin host makes one: the pool's assemblies (and this test assembly, whose
/// <see cref="UnloadablePlugin"/> plays the plugin, and the probe's, whose ExitStorm does) are loaded from the test's
/// output folder into it, everything else (the framework, xUnit) comes from the default context, as a host shares its
/// own dependencies.
/// </summary>
internal sealed class PluginContext : AssemblyLoadContext
{
    private readonly string _folder;

    public PluginContext(string folder)
        : base("zipora-plugin", isCollectible: true)
    {
        _folder = folder;
    }

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        // Only the plugin's own assemblies: returning null sends the framework's and the test runner's to the default
        // context, so that nothing of the host is loaded twice.
        string? name = assemblyName.Name;
        if (name is "Zipora.Buffers" or "Zipora.Buffers.Native" or "Zipora.Buffers.Tests" or "Zipora.Buffers.ContainerProbe")
        {
            return LoadFromAssemblyPath(Path.Combine(_folder, name + ".dll"));
        }

        return null;
    }
}
