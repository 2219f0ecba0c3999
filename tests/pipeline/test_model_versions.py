"""Which directories count as model versions: ASCII digits only, one rule for local and gs://."""

from __future__ import annotations

from mnistkit.model_export.export import newest_version


def test_only_ascii_digit_names_are_versions():
    dirs = ["m/17", "m/٩٩٩", "m/²", "m/9a", "m/-5", "m/ 99", "m/3"]
    assert newest_version(dirs) == "m/17"
    assert newest_version(["gs://b/m/١٢٣"]) is None


def test_the_largest_number_wins_not_the_longest_name():
    assert newest_version(["m/0099", "m/100", "m/20"]) == "m/100"
