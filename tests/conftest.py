import os

# The cuda backend's tests run in numba.cuda's simulator unless NUMBA_ENABLE_CUDASIM=0 is
# set (on a machine with a GPU). It must be set before numba.cuda is first imported.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest

import fastmix


@pytest.fixture
def key():
    return fastmix.Key.from_hex("0f" * 32)


@pytest.fixture(scope="session")
def photo_tiles():
    """Real photographs (scikit-image samples) cut into 32x32 RGB tiles, labelled by photo."""
    pytest.importorskip("skimage.data")
    from fastmix.samples import photo_tiles as tiles

    return tiles()
