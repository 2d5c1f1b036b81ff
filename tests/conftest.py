import numpy as np
import pytest

import fastmix


@pytest.fixture
def key():
    return fastmix.Key.from_hex("0f" * 32)


@pytest.fixture(scope="session")
def photo_tiles():
    """Real photographs (scikit-image samples) cut into 32x32 RGB tiles, labelled by photo."""
    data = pytest.importorskip("skimage.data")
    tiles, labels = [], []
    for label, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        photo = getattr(data, name)()[:256, :256, :3]
        for top in range(0, 256, 32):
            for left in range(0, 256, 32):
                tiles.append(photo[top:top + 32, left:left + 32])
                labels.append(label)
    return np.ascontiguousarray(np.stack(tiles)), np.asarray(labels)
