using System;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Compiles every method of the pool's assemblies before a test takes its process to a limit where the JIT cannot get
/// memory of its own (the map count limit): a path first run there, such as the portable allocator the huge tier
/// falls back to when every <c>mmap</c> is refused, would otherwise be compiled there, and the runtime ends the
/// process when its JIT's allocation fails (seen as SIGSEGV in libcoreclr under libclrjit). Meant for a child process
/// run with tiered compilation off, where the code compiled here is the code that runs.
/// </summary>
internal static class AheadOfTheLimit
{
    private const BindingFlags Declared = BindingFlags.DeclaredOnly | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    /// <summary>Compiles every non-generic method and constructor with a body in the assemblies of <paramref name="types"/>; returns how many.</summary>
    public static int CompileAssembliesOf(params Type[] types)
    {
        int compiled = 0;
        foreach (Type assemblyType in types)
        {
            foreach (Type type in assemblyType.Assembly.GetTypes())
            {
                if (type.ContainsGenericParameters)
                {
                    continue;
                }

                foreach (MethodBase method in type.GetMethods(Declared))
                {
                    compiled += Compile(method);
                }

                foreach (MethodBase constructor in type.GetConstructors(Declared))
                {
                    compiled += Compile(constructor);
                }
            }
        }

        return compiled;
    }

    private static int Compile(MethodBase method)
    {
        // Generic methods need their instantiations, abstract ones have no body, and the runtime's own calls and P/Invoke
        // declarations are not compiled by the JIT.
        if (method.ContainsGenericParameters || method.IsAbstract || (method.MethodImplementationFlags & (MethodImplAttributes.InternalCall | MethodImplAttributes.Runtime)) != 0 || (method.Attributes & MethodAttributes.PinvokeImpl) != 0)
        {
            return 0;
        }

        RuntimeHelpers.PrepareMethod(method.MethodHandle);
        return 1;
    }
}
