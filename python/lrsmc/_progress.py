"""Progress bars for long calls (fit, filter), drawn by tqdm: text in a terminal, a widget in a
Jupyter notebook (tqdm.auto picks), and only once a call has run for DELAY_SECONDS."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Optional, Union

from . import _core

if TYPE_CHECKING:
    from tqdm import tqdm

#: Seconds a call runs before its progress bar appears; shorter calls show none.
DELAY_SECONDS = 3.0

#: What ``progress=`` takes: "auto" shows a bar in a terminal or notebook (not when stderr goes to
#: a file or a pipe), True shows one wherever stderr goes, False never.
Progress = Union[bool, str]


def resolve(progress: Progress, name: str = "progress") -> Progress:
    """`progress` as True, False or "auto" (0 and 1 read as False and True); anything else raises
    InvalidInputError naming `name`."""
    if isinstance(progress, str) and progress == "auto":
        return "auto"
    if isinstance(progress, numbers.Integral) and int(progress) in (0, 1):
        return bool(progress)
    raise _core.InvalidInputError(
        f"{name} is not recognised; got {progress!r}, expected True, False or 'auto'"
    )


def bar(progress: Progress, total: int, description: str, unit: str) -> Optional[tqdm]:
    """A progress bar of `total` units, or None when `progress` is False. The bar draws nothing
    until DELAY_SECONDS have passed, nor ever with "auto" when stderr is not a terminal (tqdm's
    ``disable=None``; a notebook always shows it): check ``bar.disable`` before doing extra work
    for it. Close it when done."""
    progress = resolve(progress)
    if progress is False:
        return None
    # Imported on first use: in a notebook without ipywidgets, importing tqdm.auto warns, and
    # `import lrsmc` should not.
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        delay=DELAY_SECONDS,
        disable=None if progress == "auto" else False,
        dynamic_ncols=True,
    )
