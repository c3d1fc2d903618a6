from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgewise.core.errors import ConfigError, SignatureError
from edgewise.core.signing import PrivateKey, PublicKey, load_private_key, load_public_key, write_key_pair


def test_key_pair_written_private_0600_and_round_trips(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    public_path = write_key_pair(key, tmp_path / "pub.key")
    assert stat.S_IMODE((tmp_path / "pub.key").stat().st_mode) == 0o600
    loaded = load_private_key(tmp_path / "pub.key")
    public = load_public_key(public_path)
    assert public == key.public
    signature = loaded.sign(b"payload")
    assert public.verify(signature, b"payload")
    assert not public.verify(signature, b"payload!")


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    write_key_pair(PrivateKey.generate(), tmp_path / "k")
    with pytest.raises(ConfigError, match="already exists"):
        write_key_pair(PrivateKey.generate(), tmp_path / "k")


@pytest.mark.parametrize("text", ["not base64!!", "aGVsbG8="])
def test_malformed_public_keys_are_refused(text: str) -> None:
    with pytest.raises(SignatureError):
        PublicKey.from_b64(text)


def test_garbage_private_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("hello")
    with pytest.raises(ConfigError, match="PEM"):
        load_private_key(tmp_path / "bad.key")
