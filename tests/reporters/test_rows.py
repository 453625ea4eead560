"""The table's row rules on small hand-made statistics."""

from __future__ import annotations

from torchtally_reporters.table import Row, combine, drop_trivial, fast_forward, tree_rows


def test_drop_trivial_keeps_parents_of_kept_rows() -> None:
    stats = {
        "": {"flops": 5},
        "a": {"flops": 0},
        "a.b": {"flops": 5},
        "c": {"flops": 0},
        "c.d": {"flops": 0},
    }
    assert list(drop_trivial(stats)) == ["", "a", "a.b"]


def test_drop_trivial_keeps_the_model_row() -> None:
    assert drop_trivial({"": {"flops": 0}, "a": {"flops": 0}}) == {"": {"flops": 0}}


def test_combine() -> None:
    assert combine({"p": "1", "f": ""}, {"p": "1", "f": "2"}) == {"p": "1", "f": "2"}
    assert combine({"p": "1"}, {"p": "2"}) is None
    assert combine({"p": "1"}, {"p": "1", "f": "2"}) is None


def test_fast_forward_follows_agreeing_single_children() -> None:
    cells = {
        "": {"p": "9"},
        "a": {"p": "9"},
        "a.b": {"p": ""},
        "a.b.c": {"p": "8"},
        "a.b.d": {"p": "1"},
    }
    children = {"": ["a"], "a": ["a.b"], "a.b": ["a.b.c", "a.b.d"]}
    assert fast_forward("", cells, children) == ("a.b", {"p": "9"})
    assert fast_forward("a.b.c", cells, children) == ("a.b.c", {"p": "8"})


def test_tree_rows_strip_the_fast_forwarded_root() -> None:
    cells = {"": {"p": "3"}, "net": {"p": "3"}, "net.x": {"p": "1"}, "net.y": {"p": "2"}}
    assert tree_rows(cells, max_depth=3) == [
        Row(0, "net", {"p": "3"}),
        Row(1, "x", {"p": "1"}),
        Row(1, "y", {"p": "2"}),
    ]
    assert tree_rows(cells, max_depth=0) == [Row(0, "net", {"p": "3"})]
