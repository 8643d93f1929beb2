"""Shard plans: contiguous, balanced, every row in exactly one shard."""

from hypothesis import given
from hypothesis import strategies as st

from poet.transforms.sharding import ShardPlan


@given(st.lists(st.integers(1, 50), min_size=1, max_size=20), st.one_of(st.none(), st.integers(1, 40)))
def test_shards_partition_the_ranks_and_differ_by_at_most_one_row(fragment_rows, num_shards):
    fragments = [(("train", 0, 1000 * i), (rows, 10 * rows)) for i, rows in enumerate(fragment_rows)]
    plan = ShardPlan.from_fragments(["train"], fragments, num_shards=num_shards, max_shard_bytes=100)
    total = sum(fragment_rows)
    ranges = [plan.rank_range("train", i) for i in range(plan.shard_counts["train"])]
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [hi - lo for lo, hi in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    for i, (lo, hi) in enumerate(ranges):
        assert all(r * len(ranges) // total == i for r in range(lo, hi))
    # fragments start where the previous ones end, in source order
    offsets = [plan.fragment_offsets[key] for key, _ in fragments]
    assert offsets == [sum(fragment_rows[:i]) for i in range(len(fragment_rows))]


def test_shard_count_follows_the_size_limit_and_never_exceeds_the_rows():
    fragments = [(("train", 0, 0), (10, 1_000))]
    assert ShardPlan.from_fragments(["train"], fragments, num_shards=None, max_shard_bytes=300).shard_counts == {"train": 4}
    assert ShardPlan.from_fragments(["train"], fragments, num_shards=50, max_shard_bytes=300).shard_counts == {"train": 10}
