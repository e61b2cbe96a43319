using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;
using Zipora.Buffers.Native;

namespace Zipora.Buffers.Tests;

/// <summary>
/// Calls every member of <see cref="PublicSurface"/> with one hostile argument at a time (and on a disposed instance),
/// and notes each call whose exception its doc does not list, whose argument exception names no parameter or option,
/// or after which the pool it ran against lost something.
/// </summary>
internal sealed class SurfaceFuzz
{
    private static readonly TimeSpan s_hangLimit = TimeSpan.FromSeconds(5);

    private readonly DocumentedExceptions _docs = new(typeof(TieredMemoryPool).Assembly, typeof(NativeMemoryManager).Assembly);

    /// <summary>What broke the library's promise, one line a call.</summary>
    public List<string> Findings { get; } = [];

    /// <summary>Calls made.</summary>
    public int Calls { get; private set; }

    /// <summary>Doc IDs of the members called (accessors count once per property and direction).</summary>
    public HashSet<string> MembersCalled { get; } = new(StringComparer.Ordinal);

    public void Run()
    {
        Calls += OptionsFuzz.Run(_docs, Findings);
        foreach (Type type in PublicSurface.Types())
        {
            foreach ((MethodBase method, MemberInfo documented) in PublicSurface.Members(type))
            {
                string id = DocumentedExceptions.DocId(documented);
                string callId = method is MethodInfo { IsSpecialName: true } accessor ? $"{id}.{accessor.Name[..3]}" : id;
                if (PublicSurface.NotCalled.ContainsKey(DocumentedExceptions.DocId(method)))
                {
                    continue;
                }

                MembersCalled.Add(callId);
                bool instance = !method.IsStatic && method is not ConstructorInfo;
                IEnumerable<(string Label, Func<SurfaceContext, object> Make)?> targets = instance
                    ? SurfaceTargets.Of(type).Select(target => ((string, Func<SurfaceContext, object>)?)target)
                    : [null];
                foreach ((string Label, Func<SurfaceContext, object> Make)? target in targets)
                {
                    RunMember(method, documented, callId, target);
                }
            }
        }
    }

    private void RunMember(MethodBase method, MemberInfo documented, string callId, (string Label, Func<SurfaceContext, object> Make)? target)
    {
        ParameterInfo[] parameters = method.GetParameters();
        Call(method, documented, callId, target, parameters, -1, ("good arguments", () => null));
        if (target?.Label.StartsWith("disposed", StringComparison.Ordinal) == true)
        {
            // A disposed instance is hostile already: its members are called with good arguments only.
            return;
        }

        if (target?.Label == "caller-owned manager" || PublicSurface.NotCalled.ContainsKey(callId + "#hostile"))
        {
            return;
        }

        for (int i = 0; i < parameters.Length; i++)
        {
            // Labels only: each value is made again in its call's context.
            (string, Func<object?>)[] hostile = [.. HostileValues.Of(SurfaceTargets.SpanCarrier(parameters[i].ParameterType), null!, null)];
            for (int v = 0; v < hostile.Length; v++)
            {
                Call(method, documented, callId, target, parameters, i, hostile[v]);
            }

            // Values that need the instance itself ("itself" as a destination) are made with it, in the call.
            Call(method, documented, callId, target, parameters, i, ("itself", () => null));
        }
    }

    private void Call(
        MethodBase method,
        MemberInfo documented,
        string callId,
        (string Label, Func<SurfaceContext, object> Make)? target,
        ParameterInfo[] parameters,
        int hostileIndex,
        (string Label, Func<object?> Value) hostile)
    {
        var context = new SurfaceContext();
        object? instance = target?.Make(context);
        object?[] args = [.. parameters.Select(p => HostileValues.Good(SurfaceTargets.SpanCarrier(p.ParameterType), context))];
        if (hostileIndex >= 0)
        {
            if (hostile.Label == "itself")
            {
                // Only a parameter the instance itself fits (a stream copied into itself, a writer into itself).
                Type parameterType = parameters[hostileIndex].ParameterType;
                if (instance is null || !parameterType.IsInstanceOfType(instance) || parameterType == typeof(object))
                {
                    context.Dispose();
                    context.Pool.Dispose();
                    return;
                }

                args[hostileIndex] = instance;
            }
            else
            {
                // Made again in this call's context, so what it holds is checked with the rest.
                args[hostileIndex] = HostileValues.Of(SurfaceTargets.SpanCarrier(parameters[hostileIndex].ParameterType), context, instance)
                    .First(value => value.Label == hostile.Label).Value();
            }
        }

        string call = $"{callId} on {target?.Label ?? "static"}"
            + (hostileIndex < 0 ? string.Empty : $" with {parameters[hostileIndex].Name} = {hostile.Label}");
        Calls++;
        Exception? thrown = Invoke(method, instance, args, context, call);
        if (thrown is not null)
        {
            Judge(call, thrown, documented, method, args);
        }

        try
        {
            context.AssertNothingLost(call);
        }
        catch (Exception lost)
        {
            Findings.Add($"LOST: {call}: {lost.Message}");
        }
    }

    /// <summary>Makes the call; returns what it threw, or what the task it returned faulted with.</summary>
    private Exception? Invoke(MethodBase method, object? instance, object?[] args, SurfaceContext context, string call)
    {
        object? result;
        try
        {
            string id = DocumentedExceptions.DocId(method);
            result = SurfaceTargets.NeedsSpanCall(method)
                ? SurfaceTargets.SpanCalls.TryGetValue(id, out Func<object, object?[], object?>? spanCall)
                    ? spanCall(instance!, args)
                    : throw new NotSupportedException($"{id} takes or gives a span: add it to SurfaceTargets.SpanCalls.")
                : method is ConstructorInfo constructor ? constructor.Invoke(args) : method.Invoke(instance, args);
        }
        catch (TargetInvocationException invocation)
        {
            return invocation.InnerException;
        }
        catch (Exception direct) when (direct is not NotSupportedException || SurfaceTargets.NeedsSpanCall(method))
        {
            // A span call runs without reflection's wrapper.
            return direct;
        }

        Task? task = result switch
        {
            Task asTask => asTask,
            ValueTask valueTask => valueTask.AsTask(),
            ValueTask<int> valueTask => valueTask.AsTask(),
            _ => null,
        };
        if (task is not null)
        {
            // Waited through a continuation, which completes however the task does, so the wait itself throws nothing.
            if (!task.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Wait(s_hangLimit))
            {
                Findings.Add($"HANG: {call}: its task did not complete in {s_hangLimit.TotalSeconds} s.");
                return null;
            }

            return task.IsFaulted ? task.Exception!.InnerException
                : task.IsCanceled ? new OperationCanceledException("The task was cancelled.")
                : null;
        }

        if (result is IDisposable disposable)
        {
            context.Track(disposable);
        }

        if (method.Name == nameof(PageAllocator.TryMap) && result is true && instance is PageAllocator allocator)
        {
            nint address = (nint)args[3]!;
            nuint length = (nuint)args[0]!;
            context.OnDispose(() => allocator.Unmap(address, length));

            // No machine maps 128 TB: a success that large mapped something else (a length that wrapped).
            if (length > (nuint)1 << 47)
            {
                Findings.Add($"FALSE SUCCESS: {call}: TryMap reported {length} bytes mapped at 0x{address:x}.");
            }
        }

        return null;
    }

    private void Judge(string call, Exception thrown, MemberInfo documented, MethodBase method, object?[] args)
    {
        if (thrown is OperationCanceledException && args.Any(arg => arg is CancellationToken { IsCancellationRequested: true }))
        {
            return;
        }

        IReadOnlyCollection<Type> listed = _docs.Of(documented);
        string name = thrown.GetType().Name;
        if (!listed.Any(type => type.IsInstanceOfType(thrown)))
        {
            Findings.Add($"UNDOCUMENTED: {call} threw {name} ({Describe(listed)}): {thrown.Message}");
            return;
        }

        if (!listed.Contains(thrown.GetType()))
        {
            Findings.Add($"SUBCLASS: {call} threw {name}, documented only as a base ({Describe(listed)}): {thrown.Message}");
        }

        if (thrown is ArgumentException argument && !NamesOf(method).Contains(argument.ParamName ?? string.Empty))
        {
            Findings.Add($"UNNAMED: {call} threw {name} naming '{argument.ParamName}', not a parameter or option: {thrown.Message}");
        }
    }

    /// <summary>What an argument exception of <paramref name="method"/> may name: its parameters, and the options it takes.</summary>
    private static HashSet<string> NamesOf(MethodBase method)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (ParameterInfo parameter in method.GetParameters())
        {
            names.Add(parameter.Name!);
            if (parameter.ParameterType.Name.EndsWith("Options", StringComparison.Ordinal))
            {
                names.UnionWith(parameter.ParameterType.GetProperties().Select(property => property.Name));
            }
        }

        return names;
    }

    private static string Describe(IReadOnlyCollection<Type> listed) =>
        listed.Count == 0 ? "its doc lists none" : "its doc lists " + string.Join(", ", listed.Select(type => type.Name));
}
