"""The Inception feature extractor through torch-fidelity's real loading path, with a random-valued local file."""

from __future__ import annotations

import pickle

import pytest
import torch

from scoresde.metrics.inception import LOGITS_DIM, POOL_DIM, load_inception


@pytest.fixture(scope="module")
def extractor(inception_weights):
    return load_inception(inception_weights)


def test_shapes_determinism_and_batch_independence(extractor):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    out = extractor(images)
    assert out.pool.shape == (3, POOL_DIM) and out.logits.shape == (3, LOGITS_DIM)
    assert out.pool.dtype == torch.float32 and torch.isfinite(out.pool).all() and torch.isfinite(out.logits).all()
    assert out.pool.std() > 0 and not torch.allclose(out.pool[0], out.pool[1])
    again = extractor(images)
    torch.testing.assert_close(again.pool, out.pool, rtol=0, atol=0)
    split = extractor.extract([images[:1], images[1:]])
    torch.testing.assert_close(split.pool, out.pool, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(split.logits, out.logits, rtol=1e-4, atol=1e-5)


def test_grayscale_is_repeated_to_rgb(extractor):
    gray = torch.randint(0, 256, (1, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    torch.testing.assert_close(extractor(gray).pool, extractor(gray.repeat(1, 3, 1, 1)).pool)
    with pytest.raises(ValueError, match="uint8"):
        extractor(gray.float())


def test_bad_weights_files(tmp_path):
    pytest.importorskip("torch_fidelity")
    with pytest.raises(FileNotFoundError, match="no Inception weights"):
        load_inception(tmp_path / "missing.pth")
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"fc.weight": ValueError("not a tensor")}, f, protocol=2)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_inception(evil)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, wrong)
    with pytest.raises(ValueError, match=r"fc\.weight"):
        load_inception(wrong)
