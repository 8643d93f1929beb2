"""Fan-in and fan-out through ``GroupByKey``, the one way to move data between workers that every runner honours.

Beam's Dask runner (2.77) translates only Create, ParDo, GroupByKey and Flatten.
It evaluates a side input (``AsList``, ``AsSingleton``, the default value of
``CombineGlobally``) by recomputing the producers inside each task, which
repeated elements when we tried it, and it treats ``Reshuffle`` as a no-op. So
the pipeline gathers with :class:`Gather` instead of side inputs, and spreads
work with :class:`Spread` instead of ``Reshuffle``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import apache_beam as beam


class Gather(beam.PTransform):
    """Every element of the input as one list, on one worker; nothing at all for an empty input.

    The list's order is the runner's: consumers sort what they need sorted.
    """

    def expand(self, pcoll):
        return (
            pcoll
            | "OneKey" >> beam.Map(lambda element: (None, element))
            | "Group" >> beam.GroupByKey()
            | "AsList" >> beam.Map(lambda keyed: list(keyed[1]))
        )


class GatherTagged(beam.PTransform):
    """``{tag: PCollection}`` → exactly one ``{tag: [elements]}`` on one worker (every tag present, even when empty).

    The side-input-free way to bring several results together for a last step
    that must wait for all of them (the Dask runner computes only what the last
    step depends on).
    """

    def expand(self, pcolls):  # {tag: PCollection}; no annotation: Beam would read a dict as a type hint
        pipeline = next(iter(pcolls.values())).pipeline
        tags = list(pcolls)
        tagged = [pipeline | "Once" >> beam.Create([(None, None)])]  # so even empty inputs give one dict
        tagged += [pcoll | f"Tag {tag}" >> beam.Map(lambda element, tag: (tag, element), tag)
                   for tag, pcoll in pcolls.items()]
        return (
            tuple(tagged)
            | "Merge" >> beam.Flatten()
            | "All" >> Gather()
            | "ByTag" >> beam.Map(_by_tag, tags)
        )


def _by_tag(parts: list, tags: list) -> dict:
    grouped = {tag: [] for tag in tags}
    for tag, element in parts:
        if tag is not None:
            grouped[tag].append(element)
    return grouped


class Spread(beam.PTransform):
    """The same elements, redistributed over the workers by ``key`` (distinct keys spread best)."""

    def __init__(self, key: Callable[[object], Hashable]):
        super().__init__()
        self.key = key

    def expand(self, pcoll):
        return (
            pcoll
            | "Key" >> beam.Map(lambda element, key: (key(element), element), self.key)
            | "Group" >> beam.GroupByKey()
            | "Ungroup" >> beam.FlatMap(lambda keyed: keyed[1]).with_output_types(pcoll.element_type)
        )
