using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Xml.Linq;

namespace Zipora.Buffers.Tests;

/// <summary>
/// The exceptions a member's XML doc promises (its <c>&lt;exception cref&gt;</c> list), read from the compiled doc
/// files next to the libraries, following <c>&lt;inheritdoc cref&gt;</c> as the doc tools do.
/// </summary>
internal sealed class DocumentedExceptions
{
    private readonly Dictionary<string, XElement> _members = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Type> _exceptionTypes = new(StringComparer.Ordinal);

    public DocumentedExceptions(params Assembly[] assemblies)
    {
        foreach (Assembly assembly in assemblies)
        {
            string file = Path.ChangeExtension(assembly.Location, ".xml");
            foreach (XElement member in XDocument.Load(file).Descendants("member"))
            {
                _members[(string)member.Attribute("name")!] = member;
            }
        }
    }

    /// <summary>Whether the member has a doc entry at all.</summary>
    public bool IsDocumented(MemberInfo member) => _members.ContainsKey(DocId(member));

    /// <summary>The exception types the member's doc names, its inherited doc's included.</summary>
    public IReadOnlyCollection<Type> Of(MemberInfo member)
    {
        var types = new HashSet<Type>();
        Collect(DocId(member), types, depth: 0);
        return types;
    }

    private void Collect(string id, HashSet<Type> types, int depth)
    {
        if (depth > 8 || !_members.TryGetValue(id, out XElement? member))
        {
            return;
        }

        foreach (XElement exception in member.Elements("exception"))
        {
            types.Add(ExceptionType((string)exception.Attribute("cref")!));
        }

        foreach (XElement inherit in member.Elements("inheritdoc"))
        {
            if (inherit.Attribute("cref") is { } cref)
            {
                Collect(cref.Value, types, depth + 1);
            }
        }
    }

    private Type ExceptionType(string cref)
    {
        if (!_exceptionTypes.TryGetValue(cref, out Type? type))
        {
            // Every exception the libraries document is the runtime's: T:System.X in System.Private.CoreLib or System.Runtime.
            string name = cref[2..];
            type = typeof(object).Assembly.GetType(name) ?? Type.GetType(name, throwOnError: true)!;
            _exceptionTypes[cref] = type;
        }

        return type;
    }

    /// <summary>The documentation ID the C# compiler gives <paramref name="member"/>.</summary>
    public static string DocId(MemberInfo member) => member switch
    {
        ConstructorInfo constructor => $"M:{TypeName(constructor.DeclaringType!)}.#ctor{Parameters(constructor)}",
        MethodInfo method => $"M:{TypeName(method.DeclaringType!)}.{method.Name}{Parameters(method)}",
        PropertyInfo property => $"P:{TypeName(property.DeclaringType!)}.{property.Name}",
        Type type => $"T:{TypeName(type)}",
        _ => throw new ArgumentException($"No doc ID for {member.MemberType}.", nameof(member)),
    };

    private static string Parameters(MethodBase method)
    {
        ParameterInfo[] parameters = method.GetParameters();
        return parameters.Length == 0 ? string.Empty : $"({string.Join(',', parameters.Select(p => ParameterType(p.ParameterType)))})";
    }

    private static string ParameterType(Type type)
    {
        if (type.IsByRef)
        {
            return ParameterType(type.GetElementType()!) + "@";
        }

        if (type.IsArray)
        {
            return ParameterType(type.GetElementType()!) + "[]";
        }

        if (type.IsGenericType)
        {
            string definition = TypeName(type.GetGenericTypeDefinition());
            definition = definition[..definition.IndexOf('`', StringComparison.Ordinal)];
            return $"{definition}{{{string.Join(',', type.GetGenericArguments().Select(ParameterType))}}}";
        }

        return TypeName(type);
    }

    private static string TypeName(Type type) => type.FullName!.Replace('+', '.');
}
