using System;
using System.Collections.Generic;
using System.Reflection;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Every settable option of the three options types, set to each hostile value of its type, then given to what takes
/// the options: the constructor accepts it (and what it made works), or throws an argument exception its doc lists that
/// names that very option.
/// </summary>
internal static class OptionsFuzz
{
    /// <summary>Each options type, with the constructors that read it and a use of what they made.</summary>
    private static readonly (Type Options, Func<SurfaceContext, object> Make, (ConstructorInfo Constructor, Action<object, SurfaceContext> Use, MethodInfo Used)[] Consumers)[] s_consumers =
    [
        (typeof(TieredMemoryPoolOptions), _ => new TieredMemoryPoolOptions { Name = "api-surface-options" },
            [(typeof(TieredMemoryPool).GetConstructor([typeof(TieredMemoryPoolOptions)])!, (made, _) => ((TieredMemoryPool)made).Rent(16).Dispose(), typeof(TieredMemoryPool).GetMethod(nameof(TieredMemoryPool.Rent))!)]),
        (typeof(TieredArrayPoolOptions), _ => new TieredArrayPoolOptions { Name = "api-surface-options" },
            [(typeof(TieredArrayPool).GetConstructor([typeof(TieredArrayPoolOptions)])!, (made, _) => ((TieredArrayPool)made).Return(((TieredArrayPool)made).Rent(16)), typeof(TieredArrayPool).GetMethod(nameof(TieredArrayPool.Rent))!)]),
        (typeof(SegmentedBufferOptions), context => new SegmentedBufferOptions { Pool = context.Pool },
            [
                (typeof(SegmentedBufferWriter).GetConstructor([typeof(SegmentedBufferOptions)])!, (made, _) => ((SegmentedBufferWriter)made).GetSpan(16)[0] = 1, typeof(SegmentedBufferWriter).GetMethod(nameof(SegmentedBufferWriter.GetSpan))!),
                (typeof(SegmentedMemoryStream).GetConstructor([typeof(SegmentedBufferOptions)])!, (made, _) => ((SegmentedMemoryStream)made).WriteByte(1), typeof(SegmentedMemoryStream).GetMethod(nameof(SegmentedMemoryStream.WriteByte))!),
            ]),
    ];

    /// <summary>Runs every option and value through every consumer; adds what broke a promise to <paramref name="findings"/>.</summary>
    public static int Run(DocumentedExceptions docs, List<string> findings)
    {
        int calls = 0;
        foreach ((Type optionsType, Func<SurfaceContext, object> make, var consumers) in s_consumers)
        {
            foreach (PropertyInfo option in optionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (option.SetMethod is not { IsPublic: true })
                {
                    continue;
                }

                foreach ((string label, _) in HostileValues.Of(option.PropertyType, null!, null))
                {
                    foreach ((ConstructorInfo constructor, Action<object, SurfaceContext> use, MethodInfo used) in consumers)
                    {
                        calls++;
                        Run(docs, findings, make, option, label, constructor, use, used);
                    }
                }
            }
        }

        return calls;
    }

    private static void Run(DocumentedExceptions docs, List<string> findings, Func<SurfaceContext, object> make, PropertyInfo option, string label, ConstructorInfo constructor, Action<object, SurfaceContext> use, MethodInfo used)
    {
        var context = new SurfaceContext();
        string call = $"new {constructor.DeclaringType!.Name}(options with {option.Name} = {label})";
        object options = make(context);
        Exception? thrown = null;
        MemberInfo thrower = constructor;
        try
        {
            option.SetValue(options, HostileValues.Of(option.PropertyType, context, null).First(label).Value());
            IDisposable made = context.Track(AsDisposable(constructor.Invoke([options])));

            // Accepted: what it made is used once, and judged by the doc of the member used.
            thrower = used;
            use(made is Holder holder ? holder.Made : made, context);
        }
        catch (TargetInvocationException invocation)
        {
            thrown = invocation.InnerException;
        }
        catch (Exception direct)
        {
            thrown = direct;
        }

        if (thrown is not null)
        {
            call += thrower == constructor ? string.Empty : $", then {used.Name}";
            IReadOnlyCollection<Type> listed = docs.Of(thrower);
            bool documented = false;
            foreach (Type type in listed)
            {
                documented |= type.IsInstanceOfType(thrown);
            }

            if (!documented)
            {
                findings.Add($"UNDOCUMENTED: {call} threw {thrown.GetType().Name}: {thrown.Message}");
            }
            else if (thrower == constructor && thrown is ArgumentException argument && argument.ParamName != option.Name)
            {
                findings.Add($"UNNAMED: {call} threw {thrown.GetType().Name} naming '{argument.ParamName}', not {option.Name}: {thrown.Message}");
            }
        }

        try
        {
            context.AssertNothingLost(call);
        }
        catch (Exception lost)
        {
            findings.Add($"LOST: {call}: {lost.Message}");
        }
    }

    private static IDisposable AsDisposable(object made) => made as IDisposable ?? new Holder(made);

    private static (string Label, Func<object?> Value) First(this IEnumerable<(string Label, Func<object?> Value)> values, string label)
    {
        foreach ((string Label, Func<object?> Value) value in values)
        {
            if (value.Label == label)
            {
                return value;
            }
        }

        throw new InvalidOperationException($"No hostile value labelled {label}.");
    }

    /// <summary>What a constructor made that has nothing to dispose (an array pool), held for its use.</summary>
    private sealed class Holder(object made) : IDisposable
    {
        public object Made => made;

        public void Dispose()
        {
        }
    }
}
