using System.Collections.Generic;

namespace Zipora.Buffers;

/// <summary>Removal from lists whose order means nothing: the waiting mappings, the quarantined blocks.</summary>
internal static class UnorderedLists
{
    /// <summary>
    /// Takes the item at <paramref name="index"/> off <paramref name="list"/> by moving the last item into its slot.
    /// </summary>
    /// <remarks>
    /// A scan from the end down that takes items as it goes has looked at the moved item already. <c>RemoveAt</c> moves
    /// every item after the index, each time: a tick that took many due mappings from a list with many more still
    /// waiting behind them cost minutes (742,656 waiting regions in a benchmark).
    /// </remarks>
    public static T TakeAt<T>(this List<T> list, int index)
    {
        T item = list[index];
        int last = list.Count - 1;
        list[index] = list[last];
        list.RemoveAt(last);
        return item;
    }
}
