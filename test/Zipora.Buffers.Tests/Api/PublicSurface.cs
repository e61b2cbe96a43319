using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Every public constructor, method and property accessor of both libraries, and of the internal types the pool hands
/// out as public abstractions (an owner, a factory's view), less the members listed in <see cref="NotCalled"/>.
/// </summary>
internal static class PublicSurface
{
    /// <summary>
    /// Members no generic hostile call may make, by doc ID, and why. Each is covered elsewhere or cannot fail on input.
    /// </summary>
    public static readonly Dictionary<string, string> NotCalled = new(StringComparer.Ordinal)
    {
        // Raw OS calls on a range the caller owns, as NativeMemory.Free is: a hostile address or length unmaps, drops or
        // protects whatever the process has there (the test process's MappingLedger stops it on the spot, by design).
        ["M:Zipora.Buffers.Native.PageAllocator.Unmap(System.IntPtr,System.UIntPtr)"] = "unmaps the caller's range, whatever is there",
        ["M:Zipora.Buffers.Native.PageAllocator.TryAdvise(System.IntPtr,System.UIntPtr,Zipora.Buffers.Native.PageAdvice)"] = "drops the pages of the caller's range, whatever is there",
        ["M:Zipora.Buffers.Native.PageAllocator.TryProtect(System.IntPtr,System.UIntPtr,Zipora.Buffers.Native.PageProtection)"] = "protects the caller's range, whatever is there",

        // Implemented only by the pools' internal tiers, which no caller can reach: the interface is for pools to implement.
        ["M:Zipora.Buffers.Native.INativeMemoryReleaser.Release(Zipora.Buffers.Native.NativeMemoryManager)"] = "an interface for pools to implement",
        ["M:Zipora.Buffers.Native.INativeMemoryReleaser.Reclaim(Zipora.Buffers.Native.NativeMemoryManager)"] = "an interface for pools to implement",

        // A manager over caller-owned memory: any address and length the caller gives is what it claims to own, and the
        // constructor cannot tell. It is made with hostile values (never touched), but its span over them is not read.
        ["M:Zipora.Buffers.Native.NativeMemoryManager.GetSpan#hostile"] = "never read over a hostile address",
    };

    /// <summary>The types whose members are on the surface.</summary>
    public static IEnumerable<Type> Types() =>
        typeof(TieredMemoryPool).Assembly.GetExportedTypes()
            .Concat(typeof(NativeMemoryManager).Assembly.GetExportedTypes())
            .Concat([SurfaceTargets.HandedOut.BlockOwner, SurfaceTargets.HandedOut.OwnedMemoryPool])
            .Where(type => !type.IsEnum)
            .OrderBy(type => type.FullName, StringComparer.Ordinal);

    /// <summary>
    /// The calls to make on <paramref name="type"/>: each is a method to invoke, the member whose doc lists its
    /// exceptions, and its doc ID.
    /// </summary>
    public static IEnumerable<(MethodBase Method, MemberInfo Documented)> Members(Type type)
    {
        const BindingFlags Declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        if (!type.IsAbstract && type.IsPublic)
        {
            foreach (ConstructorInfo constructor in type.GetConstructors())
            {
                yield return (constructor, constructor);
            }
        }

        foreach (MethodInfo method in type.GetMethods(Declared).Where(m => !m.IsSpecialName && Reachable(m)))
        {
            yield return (method, method);
        }

        foreach (PropertyInfo property in type.GetProperties(Declared))
        {
            if (property.GetMethod is { IsPublic: true } getter && Reachable(getter))
            {
                yield return (getter, property);
            }

            // Init-only setters (the statistics') take any number: a snapshot records what it is given.
            if (property.SetMethod is { IsPublic: true } setter && !IsInitOnly(setter) && Reachable(setter))
            {
                yield return (setter, property);
            }
        }
    }

    /// <summary>
    /// Whether a caller can reach <paramref name="method"/>: any public member of a public type, and of a type the pool
    /// hands out only what overrides or implements the public abstraction it is handed out as.
    /// </summary>
    private static bool Reachable(MethodInfo method)
    {
        Type type = method.DeclaringType!;
        if (type.IsPublic || method.GetBaseDefinition().DeclaringType != type)
        {
            return true;
        }

        return type.GetInterfaces().Any(contract => type.GetInterfaceMap(contract).TargetMethods.Contains(method));
    }

    private static bool IsInitOnly(MethodInfo setter) =>
        setter.ReturnParameter.GetRequiredCustomModifiers().Any(modifier => modifier.FullName == "System.Runtime.CompilerServices.IsExternalInit");
}
