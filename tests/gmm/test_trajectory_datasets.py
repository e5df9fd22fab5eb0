"""Tests of gmm.datasets: ETH/UCY parsing and the synthetic bicycle traffic generator."""

from pathlib import Path

import numpy as np
import pytest

from gmm.datasets import INTENTS, load_eth_ucy, make_bicycle_traffic

ETH_UCY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "eth_ucy"
needs_data = pytest.mark.skipif(not ETH_UCY.is_dir(), reason="../shared/data/eth_ucy missing")


def test_parse_tiny_file_with_gap(tmp_path):
    rows = [(10 * s, 1, s, 2 * s) for s in range(6)]  # ped 1: 6 contiguous steps
    rows += [(10 * s, 2, -s, 0.5) for s in (0, 1, 2, 4, 5, 6)]  # ped 2: gap at step 3
    (tmp_path / "toy.txt").write_text("\n".join("\t".join(f"{v}" for v in r) for r in rows))
    d = load_eth_ucy(tmp_path, "toy", history=2, horizon=1)
    # ped 1 has 6 - 3 + 1 = 4 windows; ped 2's two 3-step segments give 1 each
    assert d.history.shape == (6, 2, 2) and d.future.shape == (6, 1, 2)
    assert np.bincount(d.labels).tolist() == [0, 4, 2]
    np.testing.assert_allclose(d.history[0], [[0, 0], [1, 2]])
    np.testing.assert_allclose(d.future[0], [[2, 4]])
    assert d.dt == 0.4
    assert d.sources.tolist() == ["toy"] * 6
    (tmp_path / "toy2.txt").write_text("\n".join(f"{10 * s}\t7\t{s}\t0" for s in range(4)))
    both = [load_eth_ucy(tmp_path, stem, history=2, horizon=1) for stem in ("toy", "toy2")]
    assert [len(b.sources) for b in both] == [6, 2] and both[1].sources.tolist() == ["toy2"] * 2
    with pytest.raises(ValueError, match="not found"):
        load_eth_ucy(tmp_path, "nope")
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="4 columns"):
        load_eth_ucy(tmp_path, "bad")


@needs_data
def test_eth_ucy_track_counts():
    # known counts of the raw files: biwi_eth has 44 tracks with >= 20 positions; hotel 122.
    # Each track of length n >= 20 gives n - 19 windows; compare window counts with the
    # track table by counting tracks that give at least one window.
    for scene, n_tracks in (("biwi_eth", 44), ("biwi_hotel", 122), ("crowds_zara01", 142)):
        d = load_eth_ucy(ETH_UCY, scene)
        assert len(np.unique(d.labels)) == n_tracks
        assert d.history.shape[1:] == (8, 2) and d.future.shape[1:] == (12, 2)
        # consecutive positions of a pedestrian are at most a few metres apart (0.4 s)
        steps = np.linalg.norm(np.diff(np.concatenate([d.history, d.future], 1), axis=1), axis=-1)
        assert steps.max() < 5.0
    tr = load_eth_ucy(ETH_UCY, "eth", split="train")
    assert len(tr.history) > 30 * len(load_eth_ucy(ETH_UCY, "eth").history)
    # the training windows come file by file; sources names each window's file
    for stem in ("biwi_hotel", "students003", "crowds_zara03"):
        own = load_eth_ucy(ETH_UCY, stem)
        np.testing.assert_array_equal(tr.history[tr.sources == stem], own.history)
    assert "biwi_eth" not in set(tr.sources)


def test_bicycle_traffic_properties():
    d = make_bicycle_traffic(300, history=6, horizon=20, random_state=0)
    assert d.history.shape == (300, 6, 2) and d.future.shape == (300, 20, 2)
    assert set(np.unique(d.labels)) <= set(range(len(INTENTS)))
    # agent frame: origin at the current position, last displacement along +x
    np.testing.assert_allclose(d.history[:, -1], 0.0, atol=1e-12)
    np.testing.assert_allclose(d.history[:, -2, 1], 0.0, atol=1e-9)
    assert np.all(d.history[:, -2, 0] < 0)
    # left turns end up on the left (+y), right turns on the right, on average
    assert d.future[d.labels == 1, -1, 1].mean() > 3.0
    assert d.future[d.labels == 2, -1, 1].mean() < -3.0
    # braking agents travel less far than accelerating ones
    assert d.future[d.labels == 5, -1, 0].mean() < d.future[d.labels == 6, -1, 0].mean()
    # determinism and observation noise: same seed -> same clean data; noise has the set std
    d2 = make_bicycle_traffic(300, history=6, horizon=20, random_state=0, obs_noise=0.5)
    np.testing.assert_array_equal(d.future, d2.future)
    # 300 * 6 * 2 = 3600 draws: the std estimate has relative std ~1.2 %; allow 5 %
    np.testing.assert_allclose(np.std(d2.history - d.history), 0.5, rtol=0.05)
    with pytest.raises(ValueError, match="history must be >= 2"):
        make_bicycle_traffic(10, history=1)
    with pytest.raises(ValueError, match="obs_noise"):
        make_bicycle_traffic(10, obs_noise=-1.0)
