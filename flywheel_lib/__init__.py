"""flywheel_lib: the library behind the flywheel workbench notebooks.

Stages (``notebooks/00_data`` ... ``06_flywheel``) are thin: they open their stage in a run folder with
:func:`open_stage`, call into this library and show tables and plots. Heavy parts (torch, transformers, the
HTTP client) are imported inside the modules that need them, so ``import flywheel_lib`` stays light.
"""

from .records import ContractError, Verdict, check_table
from .stage import Stage, open_stage, project_root, resolve_path
from .taxonomy import Taxonomy, TaxonomyError, load_taxonomy

__version__ = "0.1.0"

__all__ = [
    "ContractError",
    "Stage",
    "Taxonomy",
    "TaxonomyError",
    "Verdict",
    "check_table",
    "load_taxonomy",
    "open_stage",
    "project_root",
    "resolve_path",
    "__version__",
]
