"""Keep known, harmless library chatter out of the executed notebooks a researcher shares.

:func:`quiet_known_noise` runs when a stage opens (:func:`flywheel_lib.stage.open_stage`): the Hugging Face
libraries' own progress bars and advisory messages ("Loading weights", deprecation notes about arguments this
workbench does not pass) are turned off through their documented environment switches, and the FutureWarning /
DeprecationWarning families those libraries emit are filtered. Real warnings (a GateWarning, a selection-bias
warning, anything from this package) still show. Our own long loops report through :mod:`flywheel_lib.progress`.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["quiet_known_noise", "NOISY_MODULES"]

NOISY_MODULES = ("transformers", "peft", "accelerate", "datasets", "huggingface_hub", "torch", "sentence_transformers",
                 "xgrammar", "sklearn", "jupyter_client", "ray", "langdetect")
"""Libraries whose FutureWarning/DeprecationWarning/UserWarning chatter is filtered in stage notebooks."""

_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",          # transformers' logger: errors only
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",   # advisory "you should ..." notes
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",        # hub and "Loading weights" style bars
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",   # datasets' save/map bars
    "TOKENIZERS_PARALLELISM": "false",          # the fork warning of tokenizers
}


def quiet_known_noise() -> None:
    """Silence the known harmless messages for the rest of this process (idempotent)."""
    for k, v in _ENV.items():
        os.environ.setdefault(k, v)
    for mod in NOISY_MODULES:
        for cat in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=cat, module=rf"{mod}(\..*)?$")
    try:  # already imported: switch its loggers and bars off directly as well
        import sys

        if "transformers" in sys.modules:
            from transformers.utils import logging as tlog

            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
        if "datasets" in sys.modules:
            import datasets

            datasets.disable_progress_bars()
    except Exception:  # noqa: BLE001 - quieting must never break a stage
        pass
