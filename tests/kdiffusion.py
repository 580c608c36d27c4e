"""k-diffusion's samplers as a test-only reference (``k-diffusion==0.1.1.post1``, installed by ``make install`` with
``--no-deps``).

Its package ``__init__`` imports everything (models, evaluation, wandb, clip, kornia, ...), which we do not install.
Only ``k_diffusion/sampling.py`` is needed, and it imports torch, scipy, torchdiffeq, torchsde, tqdm and the
package's ``utils.py`` (PIL, safetensors, torchvision). :func:`kdiffusion_sampling` loads those two files by path
under a stand-in package (``_kdiffusion_reference``) without executing the real ``__init__``; tests call it and are
skipped, with the reason, when the package or one of those imports is missing.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import cache
from pathlib import Path

import pytest

VERSION = "0.1.1.post1"
_PACKAGE = "_kdiffusion_reference"


@cache
def _load() -> tuple[types.ModuleType | None, str]:
    """``(k_diffusion.sampling, "")``, or ``(None, why not)``."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None, (f"k-diffusion is not installed (test-only reference: pip install --no-deps "
                      f"k-diffusion=={VERSION}, as make install does)")
    root = Path(next(iter(spec.submodule_search_locations)))
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(root)]  # a package, so that sampling.py's `from . import utils` resolves here
    sys.modules[_PACKAGE] = package
    try:
        for name in ("utils", "sampling"):
            file_spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.{name}", root / f"{name}.py")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[file_spec.name] = module
            file_spec.loader.exec_module(module)
            setattr(package, name, module)
    except ImportError as error:  # torchsde missing, for one
        for name in ("utils", "sampling", ""):
            sys.modules.pop(f"{_PACKAGE}.{name}".rstrip("."), None)
        return None, f"k-diffusion's sampling.py cannot be imported ({error}); pip install -e '.[dev]'"
    return package.sampling, ""


def kdiffusion_sampling() -> types.ModuleType:
    """The module ``k_diffusion.sampling`` (loaded once); skips the calling test when it cannot be loaded."""
    module, reason = _load()
    if module is None:
        pytest.skip(reason)
    return module


@cache
def _load_layers() -> tuple[types.ModuleType | None, str]:
    """``(k_diffusion.layers, "")`` or ``(None, why not)``. ``layers.py`` imports ``dctorch`` and ``einops`` at the top
    for its DCT loss and attention blocks, which the reference parts used here (``Denoiser.get_scalings`` and its loss
    weightings) never call; where they are not installed, empty stand-in modules are put under those names for the
    duration of the import only."""
    sampling, reason = _load()
    if sampling is None:
        return None, reason
    root = Path(sampling.__file__).parent
    missing = [name for name in ("dctorch", "einops") if importlib.util.find_spec(name) is None]
    stand_ins = {name: types.ModuleType(name) for name in missing}
    if "dctorch" in stand_ins:
        stand_ins["dctorch"].functional = types.ModuleType("dctorch.functional")
        stand_ins["dctorch.functional"] = stand_ins["dctorch"].functional
    for name in ("rearrange", "repeat"):
        if "einops" in stand_ins:
            setattr(stand_ins["einops"], name, None)
    sys.modules.update(stand_ins)
    try:
        file_spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.layers", root / "layers.py")
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[file_spec.name] = module
        file_spec.loader.exec_module(module)
    except ImportError as error:
        sys.modules.pop(f"{_PACKAGE}.layers", None)
        return None, f"k-diffusion's layers.py cannot be imported ({error})"
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    return module, ""


def kdiffusion_layers() -> types.ModuleType:
    """The module ``k_diffusion.layers`` (its ``Denoiser``: Karras et al.'s preconditioner and loss weightings),
    loaded once; skips the calling test when it cannot be loaded."""
    module, reason = _load_layers()
    if module is None:
        pytest.skip(reason)
    return module
