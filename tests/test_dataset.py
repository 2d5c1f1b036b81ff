"""``fastmix.H5ImageDataset``: map-style access, per-process files, DataLoader workers."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import warnings

import h5py
import numpy as np
import pytest

import fastmix
from fastmix.errors import BadInputError


@pytest.fixture(params=["gzip", "lz4"])
def store(tmp_path, photo_tiles, request):
    import hdf5plugin

    tiles, labels = photo_tiles
    path = tmp_path / "s.h5"
    compression = {"gzip": {"compression": "gzip"}, "lz4": dict(hdf5plugin.LZ4())}
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=tiles, chunks=(16, 32, 32, 3),
                            **compression[request.param])
        names = file.create_dataset("labels", data=labels.astype(np.int64))
        names.attrs["class_names"] = ["astronaut", "coffee", "chelsea", "rocket"]
    return path, tiles, labels


def test_len_items_and_transform(store):
    path, tiles, labels = store
    dataset = fastmix.H5ImageDataset(path, transform=lambda image: image[::2, ::2])
    assert len(dataset) == len(tiles)
    assert dataset.classes == ["astronaut", "coffee", "chelsea", "rocket"]
    image, label = dataset[-1]
    np.testing.assert_array_equal(image, tiles[-1][::2, ::2])
    assert label == labels[-1] and isinstance(label, int)
    with pytest.raises(IndexError):
        dataset[len(tiles)]
    with pytest.raises(BadInputError):
        dataset["3"]
    assert "256 images of 32x32x3 uint8, 4 classes" in repr(dataset)


def test_sequential_reads_come_from_chunk_aligned_windows(store, monkeypatch):
    import fastmix.dataset as module

    path, tiles, labels = store
    monkeypatch.setattr(module, "WINDOW_BYTES", 40 * 32 * 32 * 3)  # 2 chunks of 16
    dataset = fastmix.H5ImageDataset(path)
    assert dataset.window == 32
    starts = set()
    for index in range(5, 100):
        image, label = dataset[index]
        np.testing.assert_array_equal(image, tiles[index])
        assert label == labels[index]
        starts.add(dataset._cache_start)
    assert starts == {0, 32, 64, 96}
    image, _ = dataset[200]  # a jump reads its chunk and keeps the window
    np.testing.assert_array_equal(image, tiles[200])
    assert dataset._cache_start == 96 and list(dataset._chunks)[-1] == 192
    np.testing.assert_array_equal(dataset[193][0], tiles[193])
    image[:] = 0  # callers get their own copy, never a view of the cache
    np.testing.assert_array_equal(dataset[97][0], tiles[97])


def test_string_labels_become_indices(tmp_path, photo_tiles):
    tiles, labels = photo_tiles
    names = np.array(["b-" + str(v) for v in labels], dtype=object)
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file.create_dataset("images", data=tiles[:20])
        file.create_dataset("labels", data=names[:20], dtype=h5py.string_dtype())
    dataset = fastmix.H5ImageDataset(tmp_path / "s.h5")
    assert dataset.classes == sorted(set(names[:20]))
    assert [dataset.classes[dataset[i][1]] for i in range(20)] == list(names[:20])


_SHARED: fastmix.H5ImageDataset | None = None


def _read(index: int) -> tuple[int, int, int]:
    image, label = _SHARED[index]
    return index, int(image.astype(np.int64).sum()), label


def test_forked_workers_open_their_own_file(store):
    global _SHARED
    path, tiles, labels = store
    dataset = fastmix.H5ImageDataset(path)
    dataset[0]  # the parent holds an open file before forking
    _SHARED = dataset
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(_read, range(len(tiles)), chunksize=10)
    finally:
        _SHARED = None
    assert results == [(i, int(tiles[i].astype(np.int64).sum()), int(labels[i]))
                       for i in range(len(tiles))]
    np.testing.assert_array_equal(dataset[1][0], tiles[1])  # the parent's file still works
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._file is None
    np.testing.assert_array_equal(clone[7][0], tiles[7])
    dataset.close()
    clone.close()
    assert dataset._file is None and os.getpid() > 0


def test_dataloader_with_two_workers(store):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; fastmix does not depend on it")
    path, tiles, labels = store
    dataset = fastmix.H5ImageDataset(path)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, num_workers=2, shuffle=False)
    images, targets = zip(*[(x.numpy(), y.numpy()) for x, y in loader])
    np.testing.assert_array_equal(np.concatenate(images), tiles)
    np.testing.assert_array_equal(np.concatenate(targets), labels)


@pytest.mark.parametrize("sampler", ["shuffle", "chunks"])
def test_shuffled_dataloader_with_two_workers_yields_each_image_once_per_epoch(store, sampler):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; fastmix does not depend on it")
    path, tiles, labels = store
    index_of = {tile.tobytes(): index for index, tile in enumerate(tiles)}
    assert len(index_of) == len(tiles)  # every tile differs, so its bytes name it
    dataset = fastmix.H5ImageDataset(path)
    options = ({"shuffle": True, "generator": torch.Generator().manual_seed(1)}
               if sampler == "shuffle" else
               {"sampler": fastmix.ChunkShuffleSampler(dataset, seed=1)})
    loader = torch.utils.data.DataLoader(dataset, batch_size=24, num_workers=2,
                                         persistent_workers=True, **options)
    orders = []
    for _epoch in range(2):
        seen = []
        for images, targets in loader:
            for image, target in zip(images.numpy(), targets.numpy()):
                index = index_of[image.tobytes()]
                assert target == labels[index]
                seen.append(index)
        assert sorted(seen) == list(range(len(tiles)))
        orders.append(seen)
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])


def test_imagefolder_attributes(store):
    path, _, labels = store
    dataset = fastmix.H5ImageDataset(path)
    assert dataset.class_to_idx == {"astronaut": 0, "coffee": 1, "chelsea": 2, "rocket": 3}
    assert dataset.targets == labels.tolist() and isinstance(dataset.targets, list)
    assert dataset.chunk_length == 16


def test_channels_first_is_what_to_tensor_returns():
    from fastmix.dataset import channels_first

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    chw = channels_first(image)
    assert chw.shape == (3, 2, 3) and chw.dtype == np.float32 and chw.flags.c_contiguous
    np.testing.assert_allclose(chw[1], image[:, :, 1] / 255, rtol=1e-6)
    grey = channels_first(np.ones((2, 3), np.uint16))
    assert grey.shape == (1, 2, 3) and grey.dtype == np.uint16


def test_to_tensor(store):
    import importlib.util

    path, tiles, _ = store
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(BadInputError, match="needs torch"):
            fastmix.H5ImageDataset(path, to_tensor=True)
        return
    import torch

    image, _ = fastmix.H5ImageDataset(path, to_tensor=True)[3]
    assert isinstance(image, torch.Tensor) and tuple(image.shape) == (3, 32, 32)
    np.testing.assert_allclose(image.numpy()[0], tiles[3][:, :, 0] / 255, rtol=1e-6)


def test_chunk_shuffle_sampler_of_one_chunk_at_a_time(store):
    path, tiles, _ = store
    dataset = fastmix.H5ImageDataset(path)
    sampler = fastmix.ChunkShuffleSampler(dataset, seed=3, chunks=1)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == len(tiles)
    for order in (first, second):
        assert sorted(order) == list(range(len(tiles)))
        chunks = [index // 16 for index in order]
        # each chunk's images come together: the chunk changes exactly once per chunk
        assert sum(a != b for a, b in itertools.pairwise(chunks)) == len(tiles) // 16 - 1
    assert first != second and first != list(range(len(tiles)))
    again = fastmix.ChunkShuffleSampler(dataset, seed=3, chunks=1)
    assert list(again) == first
    again.set_epoch(1)
    assert list(again) == second


def _sorted_store(path, tiles, labels, chunk=16):
    """Write the tiles sorted by class, as ingest writes a folder, and open them."""
    import hdf5plugin

    order = np.argsort(labels, kind="stable")
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=tiles[order], chunks=(chunk, *tiles.shape[1:]),
                            **hdf5plugin.LZ4())
        file["labels"] = labels[order].astype(np.int64)
    return fastmix.H5ImageDataset(path)


def test_chunk_shuffle_sampler_batches_span_chunks_from_anywhere(tmp_path, photo_tiles):
    dataset = _sorted_store(tmp_path / "sorted.h5", *photo_tiles)  # 16 chunks, 4 per class
    sampler = fastmix.ChunkShuffleSampler(dataset, seed=5)
    assert sampler.chunks == fastmix.dataset.CACHED_CHUNKS == 8
    epochs = [list(sampler) for _ in range(4)]
    for order in epochs:
        assert sorted(order) == list(range(len(dataset)))
        chunks = np.asarray(order) // 16
        groups = [set(chunks[first:first + 128].tolist()) for first in (0, 128)]
        # each run of 8 chunks' images is those 8 whole chunks, shuffled together
        assert [len(group) for group in groups] == [8, 8] and not groups[0] & groups[1]
        assert sum(a != b for a, b in itertools.pairwise(chunks)) > 64
    # the chunks of a group are drawn from the whole store, not neighbours
    spans = {max(group) - min(group) for order in epochs
             for group in (set(np.asarray(order[:128]) // 16),)}
    assert max(spans) > 8
    # a batch of 32 holds more classes than one chunk at a time gives
    labels = dataset.labels

    def classes(sampler):
        counts = []
        for epoch in range(8):
            sampler.set_epoch(epoch)
            order = np.asarray(list(sampler))
            counts += [np.unique(labels[order[i:i + 32]]).size for i in range(0, 256, 32)]
        return np.mean(counts)

    spread, one = classes(sampler), classes(fastmix.ChunkShuffleSampler(dataset, chunks=1))
    assert one <= 2 and spread > 3.5, (one, spread)
    # epoch e draws from (seed, e) only
    again = fastmix.ChunkShuffleSampler(dataset, seed=5)
    again.set_epoch(2)
    assert list(again) == epochs[2]


@pytest.mark.parametrize("cached, decodes", [(8, 16), (1, None)])
def test_interleaved_chunks_are_decoded_once_an_epoch(tmp_path, photo_tiles, monkeypatch,
                                                      cached, decodes):
    """A read is a decode when its image is neither in the window nor in a kept chunk."""
    import fastmix.dataset as module

    monkeypatch.setattr(module, "WINDOW_BYTES", 16 * 32 * 32 * 3)  # a window of one chunk
    tiles, labels = photo_tiles
    _sorted_store(tmp_path / "sorted.h5", tiles, labels)
    expected = tiles[np.argsort(labels, kind="stable")]
    for epoch in range(3):
        dataset = fastmix.H5ImageDataset(tmp_path / "sorted.h5", cached_chunks=cached)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastmix.FastmixWarning)  # cached_chunks=1
            sampler = fastmix.ChunkShuffleSampler(dataset, seed=epoch)
        read = 0
        for index in sampler:
            window = dataset._cache_start, dataset._cache_start + len(dataset._cache or ())
            read += not (window[0] <= index < window[1] or index // 16 * 16 in dataset._chunks)
            np.testing.assert_array_equal(dataset[index][0], expected[index])
            assert len(dataset._chunks) <= cached
        if decodes is None:  # one chunk kept: reads again and again
            assert read > 100
        else:  # each of the 16 chunks read once
            assert read == decodes


def test_sampler_warns_when_the_dataset_keeps_fewer_chunks(store):
    dataset = fastmix.H5ImageDataset(store[0], cached_chunks=4)
    with pytest.warns(fastmix.FastmixWarning, match="cached_chunks=8"):
        fastmix.ChunkShuffleSampler(dataset)
    with pytest.raises(BadInputError, match="chunks"):
        fastmix.ChunkShuffleSampler(dataset, chunks=0)
    with pytest.raises(BadInputError, match="cached_chunks"):
        fastmix.H5ImageDataset(store[0], cached_chunks=0)


def test_chunk_shuffle_sampler_of_a_count_and_a_short_last_chunk():
    sampler = fastmix.ChunkShuffleSampler(10, chunk_length=4, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(10))
    with pytest.raises(BadInputError, match="chunk_length"):
        fastmix.ChunkShuffleSampler(10)
    with pytest.raises(BadInputError, match="chunk_length"):
        fastmix.ChunkShuffleSampler(10, chunk_length=0)
