"""A .pt file cut short (a copy or a save interrupted) or not a PyTorch file at all is one line naming
it, never torch's traceback nor the pickled-code refusal meant for files that would run code."""
from __future__ import annotations

import io

import pytest
import torch

from conftest import evil_pickle
from ensemble.models.weights import CorruptFileError, UnsafePickleError, load_torch, read_state_dict


def _saved() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2000)}, buf)
    return buf.getvalue()


CORRUPT = [  # (how the file was damaged, its bytes, what the line says inside "(cut short or corrupt: ...)")
    ("half of it", lambda d: d[: len(d) // 2], "the archive ends early (Invalid argument)"),
    ("first 1000 bytes", lambda d: d[:1000], "PytorchStreamReader failed reading zip archive: failed finding "
                                             "central directory"),
    ("first 10 bytes", lambda d: d[:10], "PytorchStreamReader failed reading zip archive: not a ZIP archive"),
    ("empty", lambda d: b"", "EOFError"),
    ("text", lambda d: b"<html>404</html>", "Unsupported operand 60"),
    ("a pickle cut short", lambda d: b"\x80\x02}q\x00", "EOFError"),
]


@pytest.mark.parametrize("what, damage, detail", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_checkpoint_is_one_line(tmp_path, what, damage, detail):
    p = tmp_path / "last.pt"
    p.write_bytes(damage(_saved()))
    with pytest.raises(CorruptFileError) as e:
        load_torch(p)
    assert str(e.value) == f"{p}: not a complete PyTorch file (cut short or corrupt: {detail})"
    with pytest.raises(CorruptFileError):  # weights files too, not wrapped twice
        read_state_dict(p)


def test_pickled_code_is_still_refused_as_such(tmp_path):
    p = evil_pickle(tmp_path / "evil.pt")
    with pytest.raises(UnsafePickleError, match=r"refused: the file contains pickled code .*\(posix.system\)"):
        load_torch(p)
    with pytest.raises(FileNotFoundError):
        load_torch(tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    good.write_bytes(_saved())
    assert load_torch(good)["w"].shape == (2000,)
