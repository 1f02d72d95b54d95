"""Reading weight files so that a damaged file is reported by its name.

``torch.load`` on a zero-byte file raises a bare ``EOFError``; on a file cut
short it raises a ``RuntimeError`` from the zip reader (or an ``IndexError``
/ ``EOFError`` for the old pickle layout), none of which says which file was
read.  :func:`read_torch_file` turns those into one ``ValueError`` that starts
with the path and ends with ``(empty or truncated file)``; every loader of
:mod:`dmcmc_edu.models` reads through it.  :func:`read_json_file` does the same
for the JSON records beside the weights.  :func:`check_torch_file` looks at a
file without loading it (for files that other code will ``torch.load``).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zipfile
from typing import Any

import torch

__all__ = ["read_torch_file", "read_json_file", "check_torch_file", "damaged_file_error", "RefusedFileError",
           "refused_pickle_error"]

# what torch.load raises when the bytes end early or are not a torch file at all
_DAMAGED = (EOFError, IndexError, KeyError, struct.error, UnicodeDecodeError, zipfile.BadZipFile)
# fragments of the RuntimeError / UnpicklingError texts of a cut or garbled file
_DAMAGED_TEXT = ("PytorchStreamReader", "unexpected EOF", "Unsupported operand", "invalid load key")


def damaged_file_error(path, reason: str) -> ValueError:
    """The ``ValueError`` of a file that cannot be read because it is empty, cut short or garbled."""
    reason = " ".join(reason.split()) or "no further detail"
    return ValueError(f"{os.fspath(path)}: cannot be read ({reason}) (empty or truncated file)")


class RefusedFileError(ValueError, pickle.UnpicklingError):
    """A torch file that holds objects other than tensors and plain containers: refused, nothing in it was run.

    A ``ValueError`` (one ``error:`` line of the CLI) and a ``pickle.UnpicklingError`` (callers that catch torch's
    own refusal still do).
    """


def refused_pickle_error(path, err: BaseException) -> RefusedFileError:
    """The one-line refusal of a file that ``torch.load(weights_only=True)`` would not unpickle.

    Names the file and what it holds (the class torch refused), and never suggests ``weights_only=False`` (which
    runs whatever code the file carries), unlike torch's own message.
    """
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f" (it holds a {found.group(1)} object)" if found else ""
    return RefusedFileError(f"{os.fspath(path)}: refused by torch.load(weights_only=True) -- it holds objects other "
                            f"than tensors and plain containers{what}; nothing in it was run. This toolkit reads "
                            "only weight files saved as tensors (e.g. torch.save(model.state_dict(), PATH)); re-save "
                            "it that way from a trusted source")


def _first_sentence(text: str) -> str:
    head = " ".join(str(text).split())
    return head.split(". ")[0][:200]


def read_torch_file(path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; an empty, cut or garbled file raises a ValueError naming ``path``.

    A file that is intact but holds objects other than tensors and plain
    containers raises :class:`RefusedFileError` (a ValueError and an
    ``UnpicklingError``) naming the file, without torch's advice to load it
    with ``weights_only=False``.  A missing file raises ``FileNotFoundError``
    (its message holds the path).
    """
    if os.path.isfile(path):
        check_torch_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if any(t in str(err) for t in _DAMAGED_TEXT):
            raise damaged_file_error(path, "not in torch's file format") from err
        raise refused_pickle_error(path, err) from None
    except RuntimeError as err:
        if any(t in str(err) for t in _DAMAGED_TEXT):
            raise damaged_file_error(path, _first_sentence(str(err))) from err
        raise
    except _DAMAGED as err:
        raise damaged_file_error(path, f"{type(err).__name__} {_first_sentence(str(err))}".strip()) from err
    except OSError as err:
        if type(err) is not OSError:  # missing, a folder, no permission: the subclass's message says so
            raise
        raise damaged_file_error(path, _first_sentence(str(err))) from err


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive
_PICKLE_MAGIC = b"\x80"  # torch's older layout: a pickle (protocol 2 or later)


def check_torch_file(path) -> None:
    """Raise a ValueError naming ``path`` for a zero-byte file, a torch zip archive cut short, or a foreign file.

    Only the first bytes and the zip index are read (no tensors); a file in torch's older pickle layout passes
    unchecked.  A missing file raises ``FileNotFoundError``.
    """
    if os.path.getsize(path) == 0:
        raise damaged_file_error(path, "it has 0 bytes")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if _ZIP_MAGIC.startswith(head) and head != _ZIP_MAGIC:
        raise damaged_file_error(path, f"only {len(head)} bytes")
    if head != _ZIP_MAGIC and not head.startswith(_PICKLE_MAGIC):
        raise ValueError(f"{os.fspath(path)}: not a torch file (it is neither a zip archive nor a pickle; it "
                         f"starts with {head!r})")
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise damaged_file_error(path, f"zip archive: {_first_sentence(str(err))}") from err


def read_json_file(path) -> Any:
    """The JSON value in ``path``; a file that is not valid JSON (or empty) raises a ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{os.fspath(path)}: not valid JSON ({err})") from None
