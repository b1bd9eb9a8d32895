"""Rank helpers outside a process group (the two-rank bundle test covers them inside one)."""

from __future__ import annotations

from unet_med.utils import is_distributed, is_rank_zero


def test_a_single_process_is_rank_zero():
    assert not is_distributed()
    assert is_rank_zero()
