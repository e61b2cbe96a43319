using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The pool's code that must not throw for want of managed memory (a timer's callback, a finalizer, a report of a
/// background failure) guards its work with a catch of <see cref="OutOfMemoryException"/>. A lambda that captures a
/// method's parameters or outermost locals has its closure made by the compiler at the method's entry, before any
/// guard in it: a <c>BackgroundFailures.Report</c> written that way threw out of a timer's callback at the heap limit.
/// This reads the IL of every method of both assemblies that catches the exception and requires it to allocate nothing
/// before its first guarded instruction: no closure, no delegate (a static lambda's is made at its first use), no other
/// object, array or box.
/// </summary>
public sealed class OutOfMemoryGuardShapeTests
{
    private static readonly Dictionary<short, OpCode> s_opCodes = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(static field => (OpCode)field.GetValue(null)!)
        .ToDictionary(static code => code.Value);

    [Fact]
    public void NoMethodThatCatchesOutOfMemoryAllocatesBeforeItsGuard()
    {
        var guarded = new List<string>();
        var offenders = new List<string>();
        foreach (MethodBase method in MethodsOf(typeof(TieredMemoryPool).Assembly, typeof(Native.NativeMemoryManager).Assembly))
        {
            MethodBody? body = method.GetMethodBody();
            int? guardStart = body?.ExceptionHandlingClauses
                .Where(static clause => clause.Flags == ExceptionHandlingClauseOptions.Clause && clause.CatchType == typeof(OutOfMemoryException))
                .Min(static clause => (int?)clause.TryOffset);
            if (guardStart is not int start)
            {
                continue;
            }

            string name = $"{method.DeclaringType!.FullName}.{method.Name}";
            guarded.Add(name);
            foreach (string allocation in AllocationsBefore(method, body!.GetILAsByteArray()!, start))
            {
                offenders.Add($"{name} allocates {allocation} before the guard at IL offset {start}");
            }
        }

        // The reading works: the guards of the report and the ticker's callback are among those found.
        Assert.Contains(guarded, static name => name.EndsWith("BackgroundFailures.Report", StringComparison.Ordinal));
        Assert.Contains(guarded, static name => name.EndsWith("IdleTicker.OnTimer", StringComparison.Ordinal));
        Assert.True(offenders.Count == 0, string.Join(Environment.NewLine, offenders));
    }

    private static IEnumerable<MethodBase> MethodsOf(params Assembly[] assemblies)
    {
        const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        return assemblies
            .SelectMany(static assembly => assembly.GetTypes())
            .SelectMany(static type => type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All)));
    }

    /// <summary>What <paramref name="il"/> allocates on the heap before offset <paramref name="end"/>: objects, arrays, boxes.</summary>
    private static IEnumerable<string> AllocationsBefore(MethodBase method, byte[] il, int end)
    {
        Type[]? typeArguments = method.DeclaringType?.GetGenericArguments();
        Type[]? methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int offset = 0;
        while (offset < end)
        {
            short value = il[offset] == 0xFE ? (short)(0xFE00 | il[offset + 1]) : il[offset];
            OpCode code = s_opCodes[value];
            offset += code.Size;
            int token = code == OpCodes.Newobj || code == OpCodes.Newarr || code == OpCodes.Box ? BitConverter.ToInt32(il, offset) : 0;
            if (code == OpCodes.Newobj && method.Module.ResolveMethod(token, typeArguments, methodArguments)?.DeclaringType is { IsValueType: false } made)
            {
                yield return $"a {made.Name}";
            }
            else if (code == OpCodes.Newarr || code == OpCodes.Box)
            {
                yield return $"{code.Name} {method.Module.ResolveType(token, typeArguments, methodArguments).Name}";
            }

            offset += OperandSize(code, il, offset);
        }
    }

    private static int OperandSize(OpCode code, byte[] il, int offset) => code.OperandType switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + (4 * BitConverter.ToInt32(il, offset)),
        _ => 4,
    };
}
