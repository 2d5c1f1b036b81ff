import os
import stat

import pytest

import fastmix


def test_generate_save_load_round_trip(tmp_path):
    key = fastmix.Key.generate()
    path = tmp_path / "owner.key"
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == key.hex() and len(key.hex()) == 64
    assert fastmix.Key.load(path) == key
    assert fastmix.Key.generate() != key


def test_save_never_overwrites(tmp_path):
    path = tmp_path / "owner.key"
    path.write_text("precious")
    with pytest.raises(ValueError, match="already exists"):
        fastmix.Key.generate().save(path)
    assert path.read_text() == "precious"


@pytest.mark.parametrize(
    ("content", "match"),
    [("abc", "64 hexadecimal characters, found 3"), ("zz" * 32, "not hexadecimal"),
     ("", "found 0")],
)
def test_malformed_key_files(tmp_path, content, match):
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        fastmix.Key.load(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        fastmix.Key.load(tmp_path / "none.key")


def test_repr_and_str_never_show_the_key():
    key = fastmix.Key.generate()
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert key.hex() not in text
        assert key.hex()[:16] not in text
    assert key.check_value in repr(key)


def test_check_value_and_verify():
    key, other = fastmix.Key.generate(), fastmix.Key.generate()
    assert len(key.check_value) == 16 and key.check_value != other.check_value
    key.verify(key.check_value)
    with pytest.raises(fastmix.WrongKeyError, match="wrong key"):
        other.verify(key.check_value)


def test_window_seeds_depend_on_key_spec_and_window():
    key = fastmix.Key.from_hex("01" * 32)
    spec = fastmix.MixSpec().canonical()
    seeds = {key.window_seed(spec, 0), key.window_seed(spec, 1),
             key.window_seed(fastmix.MixSpec(donors=3).canonical(), 0),
             fastmix.Key.from_hex("02" * 32).window_seed(spec, 0)}
    assert len(seeds) == 4
    assert key.window_seed(spec, 7) == fastmix.Key.from_hex("01" * 32).window_seed(spec, 7)
